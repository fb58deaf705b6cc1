//! Fidelity tests of the Kubernetes API simulator.
