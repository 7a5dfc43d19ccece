"""Rendered frames to a movie: MP4 (H.264, through the ffmpeg that the imageio-ffmpeg wheel ships) or
an animated GIF (Pillow). One movie frame per rendered frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

MOVIE_FORMATS = ("mp4", "gif")


def write_movie(frames: list[Path], target: Path, fps: float) -> Path:
    """`target`'s suffix (.mp4 or .gif) picks the format; every frame must have the same size."""
    kind = target.suffix.lstrip(".").lower()
    if kind not in MOVIE_FORMATS:
        raise ValueError(f"movie format {kind!r} unknown; use one of {', '.join(MOVIE_FORMATS)}")
    images = [Image.open(path).convert("RGB") for path in frames]
    if kind == "gif":
        images[0].save(target, format="GIF", save_all=True, append_images=images[1:],
                       duration=round(1000 / fps), loop=0, optimize=False, disposal=1)
        return target
    import imageio_ffmpeg

    width, height = images[0].size
    # H.264 in yuv420p (what every player shows) needs even sides: pad by one pixel where needed.
    padded = (width + width % 2, height + height % 2)
    writer = imageio_ffmpeg.write_frames(str(target), padded, fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                         macro_block_size=1, output_params=["-movflags", "+faststart"],
                                         ffmpeg_log_level="error")
    writer.send(None)  # start the encoder
    try:
        for image in images:
            canvas = np.full((padded[1], padded[0], 3), 255, dtype=np.uint8)
            canvas[:height, :width] = np.asarray(image)
            writer.send(np.ascontiguousarray(canvas))
    finally:
        writer.close()
    return target


def count_movie_frames(path: Path) -> int:
    """Frames in a movie written by write_movie, read back from the file itself."""
    if path.suffix.lower() == ".gif":
        with Image.open(path) as image:
            return image.n_frames
    import imageio_ffmpeg

    frames, _seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    return frames
