"""The reader's memory-mapped channel read gives exactly what bioread gives, on every layout."""

import numpy as np
import pytest

from ecg_pipeline.config import ChannelSettings
from ecg_pipeline.io.acq import read_acq
from ecg_pipeline.io.acq_writer import AcqChannel, write_acq

LAYOUTS = [
    # (dividers, lengths in base ticks / divider, encodings)
    ((1,), (5000,), ("int16",)),
    ((1, 10), (9000, 900), ("int16", "int16")),
    ((1, 2, 512), (61893 * 2, 61893, 241), ("int16", "int16", "int16")),
    ((1, 3, 10), (3001, 1000, 300), ("int16", "float64", "int16")),
    ((2, 1), (400, 3000), ("float64", "int16")),  # a channel that ends long before the other
    ((4, 6, 1), (10, 700, 4000), ("int16", "int16", "float64")),
]


@pytest.mark.parametrize("byte_order", ["<", ">"])
@pytest.mark.parametrize("dividers, lengths, encodings", LAYOUTS)
def test_every_channel_matches_bioread(tmp_path, byte_order, dividers, lengths, encodings):
    import bioread

    rng = np.random.default_rng(sum(lengths))
    channels = [
        AcqChannel(
            f"ECG {i}" if i == 0 else f"CH{i}", "mV", rng.normal(0, 1, n), divider=d, encoding=e
        )
        for i, (d, n, e) in enumerate(zip(dividers, lengths, encodings))
    ]
    f = write_acq(tmp_path / "layout.acq", channels, 2000.0, byte_order=byte_order)
    for k in range(len(channels)):
        expected = np.asarray(bioread.read(f, channel_indexes=[k]).channels[k].data, dtype=float)
        got = read_acq(f, ChannelSettings(index=k)).segments[0].samples
        assert got.dtype.isnative and got.shape == (lengths[k],)
        np.testing.assert_array_equal(got, expected)
