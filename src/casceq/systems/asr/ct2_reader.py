"""Reader of CTranslate2's ``model.bin`` (binary version 6, as written by ``ModelSpec._serialize``).

Layout (little-endian, no padding)::

    u32 binary_version | str spec_name | u32 spec_revision | u32 n_variables
    n_variables x ( str name | u8 ndim | ndim x u32 dim | u8 dtype_id | u32 n_bytes | n_bytes raw )
    u32 n_aliases | n_aliases x ( str alias | str target )

where ``str`` is ``u16 length_including_nul`` then the UTF-8 bytes and a NUL. ``dtype_id`` indexes
``("float32", "int8", "int16", "int32", "float16", "bfloat16")`` (``include/ctranslate2/types.h``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from casceq.errors import InputError

SUPPORTED_BINARY_VERSIONS = (6,)
_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


@dataclass(frozen=True)
class CT2Model:
    """The variables of one CTranslate2 model file.

    Attributes:
        spec: Spec class name (``"WhisperSpec"`` for Whisper).
        revision: Spec revision.
        variables: Name (``"encoder/layer_0/self_attention/linear_0/weight"``) to array, in the file's dtype
            (bfloat16 is widened to float32, which is exact).
        aliases: Alias name to target name (tied weights, e.g. the decoder projection).
    """

    spec: str
    revision: int
    variables: dict[str, np.ndarray] = field(repr=False)
    aliases: dict[str, str]

    def get(self, name: str) -> np.ndarray:
        """Return the array called ``name``, following an alias if needed (KeyError if absent)."""
        return self.variables[self.aliases.get(name, name)]


class _Cursor:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def unpack(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise InputError(f"truncated CTranslate2 model file at byte {self.pos}", path=str(self.path))
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return int(value)

    def string(self) -> str:
        n = self.unpack("H")
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw[:-1].decode("utf-8")  # drop the trailing NUL

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise InputError(f"truncated CTranslate2 model file at byte {self.pos}", path=str(self.path))
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def _to_array(raw: bytes, dtype_id: int, shape: tuple[int, ...], name: str, path: Path) -> np.ndarray:
    if dtype_id >= len(_DTYPES):
        raise InputError(f"variable {name}: unknown dtype id {dtype_id}", path=str(path))
    dtype = _DTYPES[dtype_id]
    if dtype == "bfloat16":
        # bfloat16 is the top half of a float32: shifting the bits up widens it exactly.
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise InputError(f"variable {name}: {arr.size} values for shape {shape}", path=str(path))
    return arr.reshape(shape)


def read_ct2(path: str | Path) -> CT2Model:
    """Read every variable of a CTranslate2 ``model.bin``.

    Args:
        path: The ``model.bin`` file, or the model folder holding it.

    Raises:
        InputError: The file is missing, truncated, or of an unsupported binary version.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise InputError("CTranslate2 model file not found", path=str(path))
    cur = _Cursor(path.read_bytes(), path)
    version = cur.unpack("I")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise InputError(
            f"CTranslate2 binary version {version} is not supported (supported: {SUPPORTED_BINARY_VERSIONS})",
            path=str(path),
        )
    spec = cur.string()
    revision = cur.unpack("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(cur.unpack("I")):
        name = cur.string()
        shape = tuple(cur.unpack("I") for _ in range(cur.unpack("B")))
        dtype_id = cur.unpack("B")
        variables[name] = _to_array(cur.raw(cur.unpack("I")), dtype_id, shape, name, path)
    aliases = {}
    for _ in range(cur.unpack("I")):
        alias = cur.string()
        aliases[alias] = cur.string()
    return CT2Model(spec=spec, revision=revision, variables=variables, aliases=aliases)
