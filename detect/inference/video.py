"""An annotated video that stays readable however the process ends."""

import os
from pathlib import Path

from detect.inference.sources import journal_path
from detect.outputs import remove_stale_temporaries, temporary_sibling

# Matroska (the journal) needs no closing index, so it is readable up to its
# last buffered frames after a kill, where an MP4 without its closing index
# (moov) cannot be read at all. OpenCV's FFmpeg writer passes
# OPENCV_FFMPEG_WRITER_OPTIONS to the encoder only, not to the muxer, so a
# fragmented MP4 (movflags=frag_keyframe) is out of reach.
VIDEO_FOURCC = "mp4v"


class AnnotatedVideo:
    """An annotated video: ``path`` (MP4) once ``close``d, and its Matroska journal meanwhile.

    The MP4 is written in a temporary folder (``temporary_sibling``: a
    killed run's is removed by the next one; a folder, because OpenCV
    picks the container by the file's suffix) and renamed into place by
    ``close``. Every frame also goes to ``journal_path(path)``, readable up
    to its last buffered frames however the process ends (``JOURNAL_SUFFIX``);
    ``close`` removes it. Encoding twice costs a few milliseconds a frame.

    Raises:
      OSError: OpenCV cannot open a writer.
    """

    def __init__(self, path, fps, size):
        import cv2

        self.path, self.journal = Path(path), journal_path(Path(path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.path)
        self._folder = temporary_sibling(self.path, "tmp")
        self._folder.mkdir(exist_ok=True)
        # Unlinked first: a link left at that name is replaced, never written through.
        self.journal.unlink(missing_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC)
        self._writers = [cv2.VideoWriter(str(self._folder / self.path.name), fourcc, fps, size),
                         cv2.VideoWriter(str(self.journal), fourcc, fps, size)]
        self.frames = 0
        if not all(writer.isOpened() for writer in self._writers):
            self._release()
            self.journal.unlink(missing_ok=True)
            raise OSError(0, f"OpenCV cannot write a {VIDEO_FOURCC} video here", str(self.path))

    def write(self, bgr):
        """Appends one [H, W, 3] uint8 BGR frame."""
        for writer in self._writers:
            writer.write(bgr)
        self.frames += 1

    def _release(self):
        import shutil

        for writer in self._writers:
            writer.release()
        shutil.rmtree(self._folder, ignore_errors=True)

    def close(self):
        """Finishes the MP4, moves it into place, and removes the journal (kept if the move fails)."""
        for writer in self._writers:
            writer.release()
        try:
            if self.frames:
                os.replace(self._folder / self.path.name, self.path)
            self.journal.unlink(missing_ok=True)
        finally:
            self._release()
