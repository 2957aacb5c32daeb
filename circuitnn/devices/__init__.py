"""circuitnn.devices"""
