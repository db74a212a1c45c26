"""bayessky.models"""
