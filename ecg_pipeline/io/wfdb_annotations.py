"""Reader for MIT-format WFDB annotation files (``.atr``), pure numpy, without the wfdb package.

The format (WFDB Programmer's Guide, annot(5)) is a sequence of little-endian 16-bit words; in
each, the top 6 bits are a code ``A`` and the low 10 bits a value ``I``:

* ``A`` in 1..58: an annotation of type ``A`` at ``I`` samples after the previous one;
* ``A = 0``, ``I = 0``: the logical end of the file (every file ends so);
  ``A = 0``, ``I > 0``: a null annotation (it only moves the clock; not returned);
* ``A = 59`` SKIP: the next 4 bytes are a signed 32-bit interval, high 16-bit word first
  (PDP-11 order), added to the clock before the next annotation;
* ``A = 60`` NUM, ``61`` SUB, ``62`` CHN: set the annotation's ``num``, ``subtype`` and
  ``chan`` to the low byte of ``I`` (NUM and CHN carry over to later annotations; SUB does not);
* ``A = 63`` AUX: ``I``'s low byte is a length; that many bytes of text follow, padded to an
  even count.

These pseudo-annotations follow the annotation they modify. A NOTE (``"``) at sample 0 whose
text starts with ``## `` is a definition (ECG-ID's files start with ``## time resolution: 500``):
it gives :attr:`Annotations.fs_hz` and is not returned as an annotation.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg_pipeline.errors import FormatError

SKIP, NUM, SUB, CHN, AUX = 59, 60, 61, 62, 63
NOTE = 22
# The standard annotation mnemonics (WFDB ecgcodes.h), codes 0..41; higher codes read "[n]".
_SYMBOLS = (
    ' N L R a V F J A S E j / Q ~ [15] | [17] s T * D " = p B ^ t + u ? ! [ ] e n @ x f ( ) r'
).split(" ")
_SYMBOLS[0] = " "
# Codes that mark a QRS complex (WFDB's isqrs): their sample is the beat's fiducial point.
BEAT_SYMBOLS = frozenset("N L R B A a J S V r F e j n E / f Q ?".split())
_TIME_RESOLUTION = re.compile(r"^## time resolution: *(?P<fs>[0-9]+(?:\.[0-9]*)?)")


def annotation_symbol(code: int) -> str:
    """The mnemonic of an annotation code (``1`` -> ``"N"``, ``27`` -> ``"t"``)."""
    return _SYMBOLS[code] if 0 <= code < len(_SYMBOLS) else f"[{code}]"


@dataclass(frozen=True)
class Annotations:
    """Every annotation of one file, in file order.

    Attributes
    ----------
    sample : np.ndarray
        (n,) int64 sample numbers from the record's first sample.
    code : np.ndarray
        (n,) int16 annotation codes (1 = ``N``).
    symbol : list of str
        Their mnemonics.
    subtype, chan, num : np.ndarray
        (n,) int16 fields as set by SUB, CHN and NUM.
    aux : list of str
        Auxiliary text ("" when none).
    fs_hz : float or None
        The time resolution a ``## time resolution`` definition gives, else ``None``.
    """

    sample: np.ndarray
    code: np.ndarray
    symbol: list[str]
    subtype: np.ndarray
    chan: np.ndarray
    num: np.ndarray
    aux: list[str]
    fs_hz: float | None

    def __len__(self) -> int:
        return len(self.sample)

    @property
    def is_beat(self) -> np.ndarray:
        """(n,) bool: the annotation marks a QRS complex (see :data:`BEAT_SYMBOLS`)."""
        return np.array([s in BEAT_SYMBOLS for s in self.symbol], dtype=bool)


def _signed8(value: int) -> int:
    low = value & 0xFF
    return low - 256 if low > 127 else low


def parse_annotations(data: bytes, path: str | os.PathLike = "") -> Annotations:
    """Decode the bytes of an MIT-format annotation file (``path`` only names it in errors).

    Raises
    ------
    FormatError
        An odd byte count, a SKIP or AUX cut short, no end-of-file word, or bytes after it.
    """
    if len(data) % 2:
        raise FormatError(path, f"annotation file has an odd byte count ({len(data)}): truncated")
    words = np.frombuffer(data, dtype="<u2")
    n_words = len(words)
    samples: list[int] = []
    codes: list[int] = []
    subtypes: list[int] = []
    chans: list[int] = []
    nums: list[int] = []
    auxes: list[str] = []
    clock = 0
    chan = num = 0
    i = 0
    while True:
        if i >= n_words:
            raise FormatError(
                path, f"annotation file ends at byte {2 * n_words} without its end-of-file word"
            )
        word = int(words[i])
        a, value = word >> 10, word & 0x3FF
        i += 1
        if word == 0:  # logical end of file
            if i != n_words:
                raise FormatError(
                    path,
                    f"{2 * (n_words - i)} bytes after the end-of-file word at byte {2 * i - 2}",
                )
            break
        if a == SKIP:
            if i + 2 > n_words:
                raise FormatError(path, f"SKIP at byte {2 * i - 2} is cut short: truncated")
            hi, lo = int(words[i]), int(words[i + 1])
            interval = (hi << 16) | lo
            clock += interval - (1 << 32) if interval >= 1 << 31 else interval
            i += 2
        elif a in (NUM, SUB, CHN, AUX):
            if not codes:
                raise FormatError(
                    path, f"pseudo-annotation {a} at byte {2 * i - 2} precedes any annotation"
                )
            if a == NUM:
                num = nums[-1] = _signed8(value)
            elif a == SUB:
                subtypes[-1] = _signed8(value)
            elif a == CHN:
                chan = chans[-1] = value & 0xFF
            else:
                length = value & 0xFF
                n_aux_words = (length + 1) // 2
                if i + n_aux_words > n_words:
                    raise FormatError(
                        path, f"AUX at byte {2 * i - 2} announces {length} bytes: truncated"
                    )
                raw = words[i : i + n_aux_words].tobytes()[:length]
                auxes[-1] = raw.split(b"\0", 1)[0].decode("latin-1")
                i += n_aux_words
        else:
            clock += value
            samples.append(clock)
            codes.append(a)  # a == 0: a null annotation, dropped below
            subtypes.append(0)
            chans.append(chan)
            nums.append(num)
            auxes.append("")

    fs_hz = None
    keep = []
    for k, (s, c, text) in enumerate(zip(samples, codes, auxes)):
        if c == 0:
            continue
        if c == NOTE and s == 0 and text.startswith("## "):
            m = _TIME_RESOLUTION.match(text)
            if m is not None:
                fs_hz = float(m["fs"])
            continue
        keep.append(k)
    return Annotations(
        sample=np.array([samples[k] for k in keep], dtype=np.int64),
        code=np.array([codes[k] for k in keep], dtype=np.int16),
        symbol=[annotation_symbol(codes[k]) for k in keep],
        subtype=np.array([subtypes[k] for k in keep], dtype=np.int16),
        chan=np.array([chans[k] for k in keep], dtype=np.int16),
        num=np.array([nums[k] for k in keep], dtype=np.int16),
        aux=[auxes[k] for k in keep],
        fs_hz=fs_hz,
    )


def read_annotations(path: str | os.PathLike) -> Annotations:
    """Read every annotation of an MIT-format file (``rec_1.atr``).

    Raises
    ------
    FormatError
        The file cannot be read, or its bytes are not a whole annotation file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FormatError(path, f"annotation file unreadable ({exc.strerror or exc})") from exc
    return parse_annotations(data, path)


def read_annotation_samples(
    path: str | os.PathLike, *, beats_only: bool = True
) -> tuple[np.ndarray, list[str]]:
    """The sample numbers and symbols of a file's beat annotations (its R peaks).

    Parameters
    ----------
    path : path-like
        The ``.atr`` (or other annotator) file.
    beats_only : bool
        Keep only QRS annotations (:data:`BEAT_SYMBOLS`); ``False`` keeps every annotation
        (ECG-ID's also mark T-wave peaks, ``t``).

    Returns
    -------
    samples : np.ndarray
        (n,) int64 sample numbers, in file order.
    symbols : list of str
        Their mnemonics.
    """
    ann = read_annotations(path)
    keep = ann.is_beat if beats_only else np.ones(len(ann), dtype=bool)
    return ann.sample[keep], [s for s, k in zip(ann.symbol, keep) if k]
