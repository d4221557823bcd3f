//! Text to token ids: `tokenizer.json` when present, otherwise a WordPiece tokenizer from `vocab.txt`.

use anyhow::{anyhow, Context, Result};
use std::path::Path;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{Model, Tokenizer, TruncationParams};

/// A padded batch of token ids with its attention mask (1 = real token).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    pub input_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<u32>>,
}

impl TokenBatch {
    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }
    /// True when the batch holds no sequence.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
    /// Padded length of every sequence.
    pub fn seq_len(&self) -> usize {
        self.input_ids.first().map_or(0, |r| r.len())
    }
}

/// Wraps a Hugging Face tokenizer with our padding and truncation rules.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    pad_id: u32,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` from `dir`, falling back to `vocab.txt` (uncased BERT WordPiece).
    pub fn from_dir(dir: &Path, pad_id: u32) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let inner = if json.exists() {
            // A pipe or device there would block the read forever.
            crate::files::require_regular(&json, "tokenizer.json")?;
            Tokenizer::from_file(&json)
                .map_err(|e| anyhow!("{}: invalid tokenizer: {e}", json.display()))?
        } else {
            let vocab = dir.join("vocab.txt");
            if !vocab.exists() {
                anyhow::bail!(
                    "{}: neither tokenizer.json nor vocab.txt found",
                    dir.display()
                );
            }
            wordpiece_from_vocab(&vocab)?
        };
        Ok(Self::from_tokenizer(inner, pad_id))
    }

    /// Wraps an already built tokenizer, switching off any padding it carries.
    pub fn from_tokenizer(mut inner: Tokenizer, pad_id: u32) -> Self {
        inner.with_padding(None);
        Self { inner, pad_id }
    }

    /// The underlying Hugging Face tokenizer (for saving next to an export).
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// A warning when the vocabulary does not fit an embedding table of `rows` rows: larger
    /// means some ids have no embedding, far smaller means it is probably another model's.
    pub fn coverage_warning(&self, rows: usize) -> Option<String> {
        let vocab = self.inner.get_vocab_size(true);
        if vocab > rows {
            Some(format!(
                "the tokenizer has {vocab} tokens but the model's embedding table only {rows} \
                 rows: texts with ids of {rows} or more will be refused"
            ))
        } else if vocab * 2 < rows {
            Some(format!(
                "the tokenizer has {vocab} tokens for an embedding table of {rows} rows: it is \
                 probably not this model's tokenizer"
            ))
        } else {
            None
        }
    }

    /// The id of the unknown token, if the tokenizer's model has one.
    fn unknown_id(&self) -> Option<u32> {
        let token = match self.inner.get_model() {
            ModelWrapper::WordPiece(m) => Some(m.unk_token.clone()),
            ModelWrapper::WordLevel(m) => Some(m.unk_token.clone()),
            ModelWrapper::BPE(m) => m.unk_token.clone(),
            ModelWrapper::Unigram(_) => Some("<unk>".to_string()),
        }?;
        self.inner.token_to_id(&token)
    }

    /// The share of the non-special tokens of `sequences` that are the unknown token (`None`
    /// when the tokenizer has no unknown token or there are no such tokens).
    pub fn unknown_share(&self, sequences: &[Vec<u32>]) -> Option<f64> {
        let unknown = self.unknown_id()?;
        let special: std::collections::HashSet<u32> = self
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(id, t)| t.special && *id != unknown)
            .map(|(id, _)| id)
            .chain(std::iter::once(self.pad_id))
            .collect();
        let (mut total, mut unknowns) = (0usize, 0usize);
        for &id in sequences.iter().flatten() {
            if !special.contains(&id) {
                total += 1;
                unknowns += usize::from(id == unknown);
            }
        }
        (total > 0).then(|| unknowns as f64 / total as f64)
    }

    /// A warning when more than a fifth of the tokens of `sequences` (from `source`) are the
    /// unknown token: the tokenizer does not fit the text (wrong vocabulary or casing).
    pub fn unknown_warning(&self, sequences: &[Vec<u32>], source: &Path) -> Option<String> {
        const WARN_SHARE: f64 = 0.2;
        let share = self.unknown_share(sequences)?;
        (share > WARN_SHARE).then(|| {
            format!(
                "{}: {:.0}% of the tokens are the unknown token: the tokenizer does not fit this \
                 text (another model's vocabulary, or the wrong casing?)",
                source.display(),
                share * 100.0
            )
        })
    }

    /// Token ids of one text, special tokens as the tokenizer's post-processor adds them.
    pub fn encode(&self, text: &str, add_special: bool, max_len: usize) -> Result<Vec<u32>> {
        let mut tok = self.inner.clone();
        tok.with_truncation(Some(TruncationParams {
            max_length: max_len,
            ..Default::default()
        }))
        .map_err(|e| anyhow!("truncation: {e}"))?;
        let enc = tok
            .encode(text, add_special)
            .map_err(|e| anyhow!("cannot tokenize text: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes and pads a batch to its longest sequence (at most `max_len`).
    pub fn encode_batch(&self, texts: &[String], max_len: usize) -> Result<TokenBatch> {
        let mut tok = self.inner.clone();
        tok.with_truncation(Some(TruncationParams {
            max_length: max_len,
            ..Default::default()
        }))
        .map_err(|e| anyhow!("truncation: {e}"))?;
        let encodings = tok
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow!("cannot tokenize batch: {e}"))?;
        let ids: Vec<Vec<u32>> = encodings.iter().map(|e| e.get_ids().to_vec()).collect();
        Ok(pad_batch(&ids, self.pad_id))
    }
}

/// Right-pads id sequences to the longest one.
pub fn pad_batch(ids: &[Vec<u32>], pad_id: u32) -> TokenBatch {
    let longest = ids.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut input_ids = Vec::with_capacity(ids.len());
    let mut attention_mask = Vec::with_capacity(ids.len());
    for row in ids {
        let mut padded = row.clone();
        padded.resize(longest, pad_id);
        let mut mask = vec![1u32; row.len()];
        mask.resize(longest, 0);
        input_ids.push(padded);
        attention_mask.push(mask);
    }
    TokenBatch {
        input_ids,
        attention_mask,
    }
}

fn wordpiece_from_vocab(vocab: &Path) -> Result<Tokenizer> {
    crate::files::require_regular(vocab, "vocab.txt")?;
    let path = vocab
        .to_str()
        .ok_or_else(|| anyhow!("{}: path is not UTF-8", vocab.display()))?;
    let model = WordPiece::from_file(path)
        .build()
        .map_err(|e| anyhow!("{}: invalid WordPiece vocabulary: {e}", vocab.display()))?;
    let cls = model
        .get_vocab()
        .get("[CLS]")
        .copied()
        .with_context(|| format!("{}: no [CLS] token", vocab.display()))?;
    let sep = model
        .get_vocab()
        .get("[SEP]")
        .copied()
        .with_context(|| format!("{}: no [SEP] token", vocab.display()))?;
    // As Hugging Face's BertTokenizerFast: the bracketed tokens are special (never split, and
    // not counted as text).
    let specials: Vec<tokenizers::AddedToken> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .into_iter()
        .filter(|t| model.get_vocab().contains_key(*t))
        .map(|t| tokenizers::AddedToken::from(t, true))
        .collect();
    let mut tok = Tokenizer::new(model);
    tok.add_special_tokens(specials)
        .map_err(|e| anyhow!("{}: special tokens: {e}", vocab.display()))?;
    tok.with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
        .map_err(|e| anyhow!("normalizer: {e}"))?;
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    tok.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".to_string(), sep),
        ("[CLS]".to_string(), cls),
    )));
    Ok(tok)
}

/// Checks that every id of `sequences` (the `what`s of `source`, numbered from 1) has a row in
/// an embedding table of `rows` rows: a clear error instead of an index failure mid-forward.
pub fn check_token_ids(
    sequences: &[Vec<u32>],
    rows: usize,
    source: &Path,
    what: &str,
) -> Result<()> {
    for (i, seq) in sequences.iter().enumerate() {
        if let Some(&id) = seq.iter().find(|&&id| id as usize >= rows) {
            anyhow::bail!(
                "{}: {what} {} tokenizes to id {id}, but the model's embedding table has only \
                 {rows} rows: the tokenizer does not belong to this model",
                source.display(),
                i + 1
            );
        }
    }
    Ok(())
}

/// Token ids and mask as tensors `[B, T]`.
pub fn batch_tensors(
    batch: &TokenBatch,
    device: &candle_core::Device,
) -> Result<(candle_core::Tensor, candle_core::Tensor)> {
    let (b, t) = (batch.len(), batch.seq_len());
    let mask: Vec<u32> = batch.attention_mask.concat();
    Ok((
        ids_tensor(batch, device)?,
        candle_core::Tensor::from_vec(mask, (b, t), device)?,
    ))
}

/// Token ids as a tensor `[B, T]` (for a forward pass whose mask is a `TokenLayout`).
pub fn ids_tensor(batch: &TokenBatch, device: &candle_core::Device) -> Result<candle_core::Tensor> {
    let ids: Vec<u32> = batch.input_ids.concat();
    Ok(candle_core::Tensor::from_vec(
        ids,
        (batch.len(), batch.seq_len()),
        device,
    )?)
}
