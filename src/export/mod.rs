//! Export of a chosen subnet as an ordinary dense model: classifiers as BERT folders or ONNX
//! models, decoders as Hugging Face Llama folders or GGUF files, each with one kind of manifest.

pub mod bert;
pub mod classifier;
pub mod decoder;
pub mod decoder_subnet;
pub mod folder;
pub mod manifest;
pub mod merged;
pub mod onnx_bert;
pub mod onnx_graph;
pub mod onnx_weights;
