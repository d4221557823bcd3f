//! Reading safetensors files into f32 candle tensors, with errors that name file, tensor and problem.

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{Device, Tensor};
use safetensors::{Dtype, SafeTensors};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// All tensors of one safetensors file, converted to f32 on load.
pub struct WeightStore {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
    /// Prefix present on every name in the file that callers may omit (e.g. `bert.`).
    prefixes: Vec<String>,
    /// Tensors of a dtype that holds no weights (integer buffers such as `position_ids`, saved
    /// beside the weights by `transformers`), by name with their dtype: skipped, and named if a
    /// weight is looked up under such a name.
    skipped: HashMap<String, String>,
    /// Stored names a model has read, so that the rest can be named after loading.
    used: Mutex<HashSet<String>>,
}

impl WeightStore {
    /// Loads every tensor of `path` (f32, f16 or bf16) as f32.
    pub fn load(path: &Path, prefixes: &[&str]) -> Result<Self> {
        crate::files::require_regular(path, "a weights file")?;
        let bytes = std::fs::read(path)
            .with_context(|| format!("{}: cannot read weights file", path.display()))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| {
            anyhow!(
                "{}: corrupt or truncated safetensors file: {e}",
                path.display()
            )
        })?;
        let (tensors, skipped) = parse_safetensors(&st)
            .with_context(|| format!("{}: cannot read the tensors", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            skipped,
            used: Mutex::default(),
        })
    }

    /// Builds a store from tensors already in memory (tests, exports).
    pub fn from_tensors(path: &Path, tensors: HashMap<String, Tensor>, prefixes: &[&str]) -> Self {
        Self {
            path: path.to_path_buf(),
            tensors,
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            skipped: HashMap::new(),
            used: Mutex::default(),
        }
    }

    /// The same store with every tensor on `device`.
    pub fn to_device(self, device: &Device) -> Result<Self> {
        if device.is_cpu() {
            return Ok(self);
        }
        let tensors = self
            .tensors
            .into_iter()
            .map(|(name, t)| Ok((name, t.to_device(device)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        Ok(Self { tensors, ..self })
    }

    /// All tensors by their stored names.
    pub fn into_tensors(self) -> HashMap<String, Tensor> {
        self.tensors
    }

    /// The file the tensors came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if a tensor of that name exists (with or without a known prefix).
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    fn find(&self, name: &str) -> Option<(String, &Tensor)> {
        std::iter::once(name.to_string())
            .chain(self.prefixes.iter().map(|p| format!("{p}{name}")))
            .find_map(|key| self.tensors.get(&key).map(|t| (key, t)))
    }

    /// The tensor `name`, marked as read by the model.
    fn lookup(&self, name: &str) -> Option<&Tensor> {
        let (key, tensor) = self.find(name)?;
        if let Ok(mut used) = self.used.lock() {
            used.insert(key);
        }
        Some(tensor)
    }

    /// Stored names no model part has read and that are not among the `known` leftovers
    /// (substrings such as `position_ids` or `pooler.`), integer buffers included, sorted.
    pub fn unused_names(&self, known: &[&str]) -> Vec<String> {
        let used = self.used.lock().map(|u| u.clone()).unwrap_or_default();
        let mut names: Vec<String> = self
            .tensors
            .keys()
            .chain(self.skipped.keys())
            .filter(|n| !used.contains(*n) && !known.iter().any(|k| n.contains(k)))
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// A warning naming the tensors the model did not use (at most ten by name), if any.
    pub fn unused_warning(&self, known: &[&str]) -> Option<String> {
        let names = self.unused_names(known);
        if names.is_empty() {
            return None;
        }
        let shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
        let more = match names.len().saturating_sub(shown.len()) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        Some(format!(
            "{}: {} tensor(s) not used by the model and ignored: {}{more}",
            self.path.display(),
            names.len(),
            shown.join(", ")
        ))
    }

    /// The tensor `name`, checked against the expected shape.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let skipped = std::iter::once(name.to_string())
            .chain(self.prefixes.iter().map(|p| format!("{p}{name}")))
            .find_map(|n| self.skipped.get(&n));
        if let (None, Some(dtype)) = (self.find(name), skipped) {
            bail!(
                "{}: tensor '{name}' has unsupported dtype {dtype} (f32, f16 or bf16)",
                self.path.display()
            );
        }
        let tensor = self
            .lookup(name)
            .ok_or_else(|| anyhow!("{}: tensor '{name}' is missing", self.path.display()))?;
        if tensor.dims() != shape {
            bail!(
                "{}: tensor '{name}' has shape {:?}, expected {:?}",
                self.path.display(),
                tensor.dims(),
                shape
            );
        }
        Ok(tensor.clone())
    }

    /// The first tensor found among `names` (for alternative spellings like gamma/weight).
    pub fn get_any(&self, names: &[&str], shape: &[usize]) -> Result<Tensor> {
        for name in names {
            if self.contains(name) {
                return self.get(name, shape);
            }
        }
        // None is there: the first name's error says missing, or which dtype it has.
        self.get(names.first().copied().unwrap_or("?"), shape)
    }

    /// The tensor `name` if present (any shape check is the caller's).
    pub fn get_optional(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if self.contains(name) {
            self.get(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// The floating-point tensors as f32, and the others' names and dtypes.
type Parsed = (HashMap<String, Tensor>, HashMap<String, String>);

fn parse_safetensors(st: &SafeTensors<'_>) -> Result<Parsed> {
    let mut out = HashMap::new();
    let mut skipped = HashMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                skipped.insert(name, format!("{other:?}"));
                continue;
            }
        };
        let tensor = Tensor::from_vec(values, shape.as_slice(), &Device::Cpu)
            .with_context(|| format!("tensor '{name}'"))?;
        out.insert(name, tensor);
    }
    Ok((out, skipped))
}

/// Writes f32 tensors as a safetensors file via a temp file and rename.
pub fn save_f32(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut raw: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let values = t
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .with_context(|| format!("tensor '{name}'"))?;
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        raw.push((name.clone(), bytes, t.dims().to_vec()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = raw
        .iter()
        .map(|(n, b, s)| {
            safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| anyhow!("tensor '{n}': {e}"))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::tensor::serialize(views, None)
        .map_err(|e| anyhow!("{}: cannot serialise: {e}", path.display()))?;
    crate::files::write_atomic(path, &bytes)
}
