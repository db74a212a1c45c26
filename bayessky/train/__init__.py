"""bayessky.train"""
