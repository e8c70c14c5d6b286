"""Reading a published audio model's weights from a file the user downloaded.

The user points at a local file, or asks for the published file by name (``download``:
fetched once into the torch hub cache, as the models' own projects do); a missing or
unusable file is a one-line VabError naming the path and what to download.  The file is
read by :func:`vab.weights.read_weights` (safetensors, or ``torch.load(weights_only=True)``:
tensors and plain containers only, never arbitrary pickled objects).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote

import torch
from torch import nn

from vab.errors import VabError
from vab.weights import load_state, read_weights, state_dict_in


#: where each published weights file comes from (the URL its own project downloads it from),
#: for a scorer spec ``download``: fetched once into the torch hub cache, never in the offline path
URLS = {
    "vggish": "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
    "panns": "https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth",  # the 16-kHz one, as av-benchmark
    "passt": "https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt",
    "imagebind": "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth",
    "synchformer": "https://github.com/hkchengrex/MMAudio/releases/download/v0.1/synchformer_state_dict.pth",
}


def weights_file(spec: str | os.PathLike, kind: str) -> Path:
    """The local weights file of a scorer spec: the path itself, or for ``download`` the
    published file of `kind` (:data:`URLS`) in the torch hub cache, downloaded when absent."""
    if str(spec) != "download":
        return Path(spec)
    url = URLS[kind]
    target = Path(torch.hub.get_dir()) / "checkpoints" / unquote(url.rsplit("/", 1)[-1])
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(target), progress=False)
        except (OSError, ValueError) as exc:  # URLError is an OSError
            raise VabError(f"{kind} download: {url} could not be fetched ({exc}); download it and give its path") from None
    return target


def read_state_dict(path: str | os.PathLike, what: str, download: str) -> dict[str, torch.Tensor]:
    """The state dict in `path` (a checkpoint's ``model`` / ``state_dict`` entry when nested).

    `what` names the model, `download` says where its weight file comes from; both go into
    the error when the file is missing or unreadable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise VabError(f"{path}: no such {what} weight file (download {download})")
    try:
        return state_dict_in(read_weights(path), str(path))
    except VabError as exc:
        raise VabError(f"{exc}; expected the {what} weights, {download}") from None


def load_into(module: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike, what: str) -> nn.Module:
    """Load `state` into `module` strictly; a name or shape mismatch is one VabError line."""
    return load_state(module, state, f"{path}: not {what} weights").eval()


class NetScorer:
    """A scorer that holds one network, in eval mode on `device` (the video-audio scorers)."""

    def __init__(self, net: nn.Module, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
