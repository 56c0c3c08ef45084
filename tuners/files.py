"""The user's model files, checked before anything loads them: a damaged tokenizer or weight file is
bad input (exit 2, the file named, the fix said), not a crash deep inside a library. Files only: no
torch, no transformers.

safetensors layout (https://github.com/huggingface/safetensors, README "Format"): 8 bytes, a
little-endian u64 N; N bytes of UTF-8 JSON mapping each tensor name to ``dtype``, ``shape`` and
``data_offsets`` [begin, end) relative to the byte after the header (plus an optional
``__metadata__`` of strings); then the data. The library refuses headers over 100 MB and a data
section the offsets do not cover exactly; we check the same, and that each tensor's byte count is
its shape times its dtype's size.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from estimators.errors import MAX_JSON_DEPTH, InputError, json_depth

MAX_HEADER_BYTES = 100 * 1000**2  # safetensors' own limit (MAX_HEADER_SIZE in its Rust crate)
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
               "F4": 0.5, "F6_E2M3": 0.75, "F6_E3M2": 0.75}
RESAVE = "re-download the model folder, or re-save the weights (model.save_pretrained(folder))"
RETOKENIZE = "re-download the model folder, or re-save the tokenizer (tokenizer.save_pretrained(folder))"


def _bad(path: Path, why: str, fix: str) -> InputError:
    return InputError(f"{path.name} in {path.parent} is damaged: {why}: {fix}")


def _regular(path: Path, fix: str) -> None:
    if not path.is_file():
        raise _bad(path, "it is not a regular file (a pipe, a device, or a link to nothing)", fix)


def check_safetensors(path: str | Path) -> int:
    """Raises InputError naming ``path`` and the fix unless it is a complete safetensors file; returns
    the number of tensors. Reads only the header."""
    path = Path(path)
    _regular(path, RESAVE)
    size = path.stat().st_size
    if size < 8:
        raise _bad(path, f"{size} bytes, too short for a safetensors file (empty or cut off)", RESAVE)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise _bad(path, f"its header claims {n:,} bytes of a {size:,}-byte file (not safetensors, or cut off)",
                       RESAVE)
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad(path, "its header is not valid JSON (not safetensors, or overwritten)", RESAVE) from None
    if not isinstance(header, dict) or json_depth(header) > MAX_JSON_DEPTH:
        raise _bad(path, "its header is not a table of tensors", RESAVE)
    data = size - 8 - n
    end, tensors = 0, 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = t["data_offsets"]
            shape, width = t["shape"], DTYPE_BYTES[t["dtype"]]
            count = math.prod(int(d) for d in shape)
            ok = isinstance(begin, int) and isinstance(stop, int) and 0 <= begin <= stop and count * width == stop - begin
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise _bad(path, f"the entry of tensor '{str(name)[:60]}' is malformed", RESAVE)
        end, tensors = max(end, stop), tensors + 1
    if end != data:
        raise _bad(path, f"its tensors need {end:,} bytes of data and the file holds {data:,} "
                         f"({'cut off: an interrupted download or copy' if end > data else 'trailing bytes'})", RESAVE)
    return tensors


def check_weights(folder: str | Path) -> None:
    """Every safetensors file a model folder loads from: ``model.safetensors``, or the shards its
    ``model.safetensors.index.json`` lists (each present and complete)."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.exists():
        _regular(index, RESAVE)
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
            raise _bad(index, "it is not a safetensors index (no weight_map)", RESAVE) from None
        for shard in shards:
            if not isinstance(shard, str) or "/" in shard or not (folder / shard).exists():
                raise _bad(index, f"it lists a shard that is not in the folder ({str(shard)[:60]})", RESAVE)
            check_safetensors(folder / shard)
    elif (folder / "model.safetensors").exists() or (folder / "model.safetensors").is_symlink():
        check_safetensors(folder / "model.safetensors")


def check_tokenizer(folder: str | Path) -> None:
    """A model folder's ``tokenizer.json`` (and ``tokenizer_config.json``) readable as what they
    claim to be: UTF-8 JSON objects, the tokenizer one the ``tokenizers`` library can load."""
    folder = Path(folder)
    for name in ("tokenizer_config.json", "tokenizer.json"):
        path = folder / name
        if not path.exists() and not path.is_symlink():
            continue
        _regular(path, RETOKENIZE)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise _bad(path, "it is not UTF-8 text (binary, or overwritten)", RETOKENIZE) from None
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            raise _bad(path, "it is not valid JSON (cut off, or overwritten)", RETOKENIZE) from None
        if not isinstance(value, dict) or json_depth(value) > MAX_JSON_DEPTH:
            raise _bad(path, "it is not a JSON object", RETOKENIZE)
        if name == "tokenizer.json":
            if not isinstance(value.get("model"), dict):
                raise _bad(path, "it has no tokenizer model (an empty or foreign file)", RETOKENIZE)
            from tokenizers import Tokenizer

            try:
                Tokenizer.from_str(text)
            except Exception as exc:  # the library's own parse error: its first line says what
                raise _bad(path, f"the tokenizers library cannot load it ({str(exc).splitlines()[0][:100]})",
                           RETOKENIZE) from None
