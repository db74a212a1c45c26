"""bayessky.distributions"""
