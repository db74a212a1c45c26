"""bayessky.physics"""
