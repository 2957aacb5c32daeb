"""circuitnn.surrogate"""
