"""bayessky.plot"""
