//! A small builder for ONNX graphs over `candle_onnx`'s generated protobuf types.

use anyhow::{bail, Result};
use candle_core::Tensor;
use candle_onnx::onnx::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use prost::Message;

/// The operator set the exported graphs use (ONNX 1.12, ONNX Runtime 1.12 and later).
pub const OPSET: i64 = 17;
/// IR version matching [`OPSET`].
const IR_VERSION: i64 = 8;
/// Protobuf's hard limit on one message; larger models would need external data files.
const PROTOBUF_LIMIT: usize = 2 * 1024 * 1024 * 1024 - 1;

/// An attribute value of a node.
pub enum Attr {
    /// One integer.
    Int(i64),
    /// A list of integers.
    Ints(Vec<i64>),
    /// One float.
    Float(f32),
}

/// Nodes and initializers in topological order, with generated value names.
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
}

impl GraphBuilder {
    /// Adds node `op` on `inputs`; returns the name of its (single) output.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        self.counter += 1;
        let output = format!("{}_{}", op.to_lowercase(), self.counter);
        self.op_named(op, inputs, attrs, &output);
        output
    }

    /// Adds node `op` writing the graph value `output` (a graph output's name).
    pub fn op_named(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>, output: &str) {
        let attribute = attrs
            .into_iter()
            .map(|(name, value)| {
                let mut a = AttributeProto {
                    name: name.to_string(),
                    ..Default::default()
                };
                match value {
                    Attr::Int(i) => {
                        a.r#type = AttributeType::Int as i32;
                        a.i = i;
                    }
                    Attr::Ints(ints) => {
                        a.r#type = AttributeType::Ints as i32;
                        a.ints = ints;
                    }
                    Attr::Float(f) => {
                        a.r#type = AttributeType::Float as i32;
                        a.f = f;
                    }
                }
                a
            })
            .collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: format!("{op}_{}", self.nodes.len()),
            op_type: op.to_string(),
            attribute,
            ..Default::default()
        });
    }

    /// Adds a float32 initializer named `name` holding `t` (any float dtype, converted).
    pub fn weight(&mut self, name: &str, t: &Tensor) -> Result<String> {
        let values = t
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let dims: Vec<i64> = t.dims().iter().map(|&d| d as i64).collect();
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(self.constant(name, &dims, DataType::Float, bytes))
    }

    /// Adds a float32 scalar constant.
    pub fn scalar(&mut self, name: &str, value: f32) -> String {
        self.constant(name, &[], DataType::Float, value.to_le_bytes().to_vec())
    }

    /// Adds an int64 scalar constant (a Gather index).
    pub fn int_scalar(&mut self, name: &str, value: i64) -> String {
        self.constant(name, &[], DataType::Int64, value.to_le_bytes().to_vec())
    }

    /// Adds a 1-D int64 constant (shapes, axes, slice bounds).
    pub fn ints(&mut self, name: &str, values: &[i64]) -> String {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(name, &[values.len() as i64], DataType::Int64, bytes)
    }

    /// Adds an initializer of little-endian `bytes`.
    fn constant(&mut self, name: &str, dims: &[i64], dtype: DataType, bytes: Vec<u8>) -> String {
        self.initializers.push(TensorProto {
            name: name.to_string(),
            dims: dims.to_vec(),
            data_type: dtype as i32,
            raw_data: bytes,
            ..Default::default()
        });
        name.to_string()
    }

    /// The finished model: graph `name` with `inputs` and `outputs`, `metadata` as key/value
    /// properties, encoded as protobuf bytes.
    pub fn finish(
        self,
        name: &str,
        inputs: Vec<ValueInfoProto>,
        outputs: Vec<ValueInfoProto>,
        metadata: &[(&str, String)],
    ) -> Result<Vec<u8>> {
        let model = ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "mlfs-studio".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: name.to_string(),
                initializer: self.initializers,
                input: inputs,
                output: outputs,
                ..Default::default()
            }),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: k.to_string(),
                    value: v.clone(),
                })
                .collect(),
            ..Default::default()
        };
        let size = model.encoded_len();
        if size > PROTOBUF_LIMIT {
            bail!(
                "the ONNX model would be {:.1} GB, over protobuf's 2 GB limit for one file",
                size as f64 / 1e9
            );
        }
        Ok(model.encode_to_vec())
    }
}

/// A graph input or output: `elem` tensor with named (dynamic) or fixed dimensions.
pub fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Named(n) => dimension::Value::DimParam(n.to_string()),
                Dim::Fixed(v) => dimension::Value::DimValue(*v as i64),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One dimension of a graph input or output.
pub enum Dim {
    /// A dynamic axis, named (`batch`, `sequence`).
    Named(&'static str),
    /// A fixed size.
    Fixed(usize),
}
