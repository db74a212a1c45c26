"""bayessky.data"""
