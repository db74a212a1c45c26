"""bayessky.nn"""
