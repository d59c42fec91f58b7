"""Ship a trained speech LLM as the package's: ``ship`` copies an exported model into the package data.

Loading the shipped checkpoint is runtime code: ``casceq.systems.speech_llm.shipped``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from casceq.systems.speech_llm.shipped import SHIPPED_NAME, shipped_folder
from casceq.systems.speech_llm.ultravox_projector import (
    CONFIG_FILE,
    TRAINING_IDS_FILE,
    TRAINING_TEXTS_FILE,
    WEIGHTS_FILE,
    read_checkpoint_record,
)


def ship(
    model_folder: str | Path,
    encoder: str,
    backbone: str,
    dest: str | Path | None = None,
    *,
    name: str = SHIPPED_NAME,
) -> Path:
    """Copy an exported model into ``dest`` (default: the package data of ``name``), naming its parts by spec.

    The exported record holds this machine's cache paths; the shipped one holds the specs (``"base"``,
    ``"gemma-3-270m"``) that ``load_shipped`` resolves on any machine.
    """
    src = Path(model_folder)
    record = read_checkpoint_record(src)
    out = Path(dest) if dest is not None else shipped_folder(name)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / WEIGHTS_FILE, out / WEIGHTS_FILE)
    record["model"] = {**record.get("model", {}), "encoder": encoder, "backbone": backbone}
    (out / CONFIG_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    for listing in (TRAINING_TEXTS_FILE, TRAINING_IDS_FILE):  # what runs check their evaluated items against
        if (src / listing).is_file():
            shutil.copyfile(src / listing, out / listing)
    return out
