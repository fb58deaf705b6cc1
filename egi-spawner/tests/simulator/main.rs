//! egi-spawner against the in-repo Kubernetes API simulator (real REST, list + watch,
//! resourceVersion, status codes; a simulated kubelet, controllers and faults).

mod support;

mod claims;
mod faults;
mod lifecycle;
mod races;
mod real_cluster;
mod tokens;
