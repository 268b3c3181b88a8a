"""What the tests and benchmarks build on, which the runtime never imports: synthetic data sets
in the real formats, scenes of real faces for detection and accuracy benches, and a server
process started on a free port of 127.0.0.1."""
