"""A tiny Stable Diffusion pipeline with random weights: the `local` provider's "upstream".

Built in a fraction of a second from small configs, saved with `save_pretrained` like any real
pipeline folder, and loaded back by the provider through the same diffusers code that loads a
real model. Nothing is downloaded: the CLIP tokenizer's vocabulary is written here (letters and
end-of-word letters, no merges), the weights are drawn from a seeded generator.

The VAE has four blocks, so one latent cell is 8×8 pixels as in Stable Diffusion: a 512×512
image is a 64×64 latent, and the few tiny layers make it in well under a second on a CPU. Its
pictures are noise, but real pictures: the size, count and seed behaviour are the model's own.
"""

from __future__ import annotations

import atexit
import os
import shutil
import string
import tempfile
import threading
from pathlib import Path

_lock = threading.Lock()
_built: list[Path] = []


def build_tiny_pipeline(folder: Path) -> Path:
    """Write the tiny pipeline (StableDiffusionPipeline, DDIM) to `folder`; return it."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    # One intra-op thread: these layers are too small to gain from more, and on a busy machine
    # (two cores, several test runs) OpenMP threads spinning for each other made a 256 px image
    # ten times slower. Process-wide, which is fine in a test process.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,  # native 64×64 pixels
        in_channels=4,
        out_channels=4,
        block_out_channels=(4, 8),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8,
        attention_head_dim=2,
        norm_num_groups=2,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(2, 2, 2, 2),  # four blocks: 8 pixels per latent cell
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=1,
        sample_size=64,
    )
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in string.ascii_lowercase:
        vocab[letter] = len(vocab)
    for letter in string.ascii_lowercase:
        vocab[f"{letter}</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=8,
            intermediate_size=16,
            num_attention_heads=2,
            num_hidden_layers=1,
            max_position_embeddings=77,
            projection_dim=8,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(str(folder))
    return folder


# Where this test process keeps its shared tiny pipeline: known before it is built, so a
# conformance case can name it in its options at import time.
SHARED_FOLDER = Path(tempfile.gettempdir()) / f"imagegate-tiny-sd-{os.getpid()}"


def shared_tiny_pipeline() -> Path:
    """The tiny pipeline at SHARED_FOLDER, built on first use, removed when the process ends.

    For callers that cannot take a pytest fixture (the conformance case builds it from its
    `make_fake`). Per process, so parallel test runs on one machine never share a folder.
    """
    with _lock:
        if not _built:
            shutil.rmtree(SHARED_FOLDER, ignore_errors=True)  # a dead process's, same pid
            atexit.register(shutil.rmtree, SHARED_FOLDER, ignore_errors=True)
            _built.append(build_tiny_pipeline(SHARED_FOLDER))
        return _built[0]
