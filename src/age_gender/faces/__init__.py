"""Faces in images: the detectors (MTCNN, dlib's HOG and CNN), the eye finder, the one
face crop and where a detector's box sits in a crop. Imports only the top-level modules."""
