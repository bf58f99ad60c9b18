//! AdMesh's load generators: the serve path and the stack's limit (a bare
//! echo over the same hops), driven side by side in one run.

pub mod cpu;
pub mod driver;
pub mod echo;
pub mod mesh;
