"""circuitnn.fitting"""
