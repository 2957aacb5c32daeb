"""circuitnn.spice"""
