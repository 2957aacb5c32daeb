"""circuitnn.training"""
