"""The face front end: detection backends, landmarks, selection policy and alignment."""

from facegen.faces.align import (ARCFACE_112, FFHQ_512, align_matrix, estimate_norm, invert_affine, inverse_warp,
                                 template_points, transform_points, warp_face)
from facegen.faces.detect import (DETECTORS, MIN_FACE_SIZE, FacePolicy, detect_faces, get_detector,
                                  select_faces, sort_faces)
from facegen.faces.types import Face

__all__ = ["ARCFACE_112", "FFHQ_512", "align_matrix", "estimate_norm", "invert_affine", "inverse_warp", "template_points",
           "transform_points", "warp_face", "DETECTORS", "MIN_FACE_SIZE", "FacePolicy", "detect_faces",
           "get_detector", "select_faces", "sort_faces", "Face"]
