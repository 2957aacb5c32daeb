"""The digital/analog periphery around the arrays: bit-serial input slicing (the DAC), the ADC
and shift-and-add, used alike by single tile reads and by whole networks.

It sits above the tile and surrogate layers (it drives tile reads) and below the network.
"""

from circuitnn.periphery.adc import ADC, adc_convert
from circuitnn.periphery.bitserial import (
    BitSerialResult,
    bit_planes,
    bit_serial_matmul,
    bitserial_netlist,
    bitserial_read,
    bitserial_transient,
    check_codes,
    shift_add,
)

__all__ = ["ADC", "BitSerialResult", "adc_convert", "bit_planes", "bit_serial_matmul",
           "bitserial_netlist", "bitserial_read", "bitserial_transient", "check_codes", "shift_add"]
