"""circuitnn.tile"""
