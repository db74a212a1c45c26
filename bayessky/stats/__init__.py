"""bayessky.stats"""
