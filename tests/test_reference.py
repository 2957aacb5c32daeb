"""The reference preset loads into typed sections and refuses malformed text."""

import pytest

from circuitnn.errors import CircuitnnError
from circuitnn.reference import REF, load_reference


def test_preset_values_and_types():
    assert (REF.hardware.pe_rows, REF.hardware.pe_cols, REF.hardware.n_pes) == (128, 16, 8)
    assert REF.hardware.weight_levels == 7 and isinstance(REF.hardware.device_levels, int)
    assert REF.choices.g_min < REF.choices.g_max
    assert REF.published.per_group_error_before["G2"] == pytest.approx(0.066)


@pytest.mark.parametrize("text", ["[hardware", "[hardware]\nn_pes = 8\n"])
def test_malformed_preset_is_one_clear_error(text):
    with pytest.raises(CircuitnnError, match="reference_yao2020.toml"):
        load_reference(text)
