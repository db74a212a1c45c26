"""bayessky.infer"""
