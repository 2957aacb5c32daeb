"""circuitnn.network"""
