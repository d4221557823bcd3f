//! Rewiring for decoders on SmolLM2-135M (scripts/fetch-smollm2.sh): importance finds silenced
//! KV groups and neurons, the permutation leaves the teacher's function unchanged, and a run
//! that rewires before stage 1 stores its orders so that a reopened run measures what it trained.

mod common;

use candle_core::{DType, Tensor};
use mlfs_studio::mlfs::head_loss::next_token_targets;
use mlfs_studio::mlfs::rewire_decoder::{rewire, TokenBatch};
use mlfs_studio::model::llama::{DecoderTeacher, LlamaDecoder};
use mlfs_studio::model::SubnetSpec;
use mlfs_studio::train::data::{read_corpus, token_blocks};
use mlfs_studio::train::decoder::metrics::evaluate_blocks;
use mlfs_studio::train::protocol::TrainEvent;
use mlfs_studio::train::run::Flow;
use mlfs_studio::train::DecoderRun;

/// Training blocks of 32 tokens from the shipped code corpus.
fn blocks(teacher: &DecoderTeacher, n: usize) -> Vec<Vec<u32>> {
    let text = read_corpus(&common::assets().join("python-code/train.jsonl")).unwrap();
    let eos = teacher.decoder.config.eos_token_id;
    let mut b = token_blocks(&text, &teacher.tokenizer, 32, eos).unwrap();
    b.truncate(n);
    b
}

fn batch(net: &LlamaDecoder, blocks: &[Vec<u32>]) -> TokenBatch {
    let refs: Vec<&[u32]> = blocks.iter().map(|b| b.as_slice()).collect();
    let ids = Tensor::from_vec(blocks.concat(), (blocks.len(), 32), net.device()).unwrap();
    (ids, next_token_targets(&refs))
}

/// Zeroes rows `rows` (dim 0) or columns (dim 1) of a frozen teacher matrix.
fn zero(w: &Tensor, dim: usize, range: std::ops::Range<usize>) -> Tensor {
    let n = w.dim(dim).unwrap();
    let keep: Vec<f32> = (0..n)
        .map(|i| f32::from(!range.contains(&i) as u8))
        .collect();
    let keep = Tensor::from_vec(keep, n, w.device()).unwrap();
    let shape = if dim == 0 { (n, 1) } else { (1, n) };
    w.broadcast_mul(&keep.reshape(shape).unwrap()).unwrap()
}

fn is_permutation(order: &[usize], n: usize) -> bool {
    let mut sorted = order.to_vec();
    sorted.sort_unstable();
    sorted == (0..n).collect::<Vec<_>>()
}

#[test]
fn importance_ranks_silenced_groups_and_neurons_last_and_keeps_the_teacher() {
    let mut teacher = DecoderTeacher::load(common::smollm2_gguf()).unwrap();
    let hs = teacher.decoder.config.head_size();
    // Layer 3: KV group 0 gets zero values (its three query heads output nothing), and the
    // down projection ignores neurons 0, 1 and 2: their gates have no effect on the loss.
    let layer = &mut teacher.decoder.layers[3];
    layer.v.weight_pre = zero(&layer.v.weight_pre, 0, 0..hs);
    layer.v.set_active_stage(None).unwrap();
    layer.down.weight_pre = zero(&layer.down.weight_pre, 1, 0..3);
    layer.down.set_active_stage(None).unwrap();

    let data = blocks(&teacher, 4);
    let net = &mut teacher.decoder;
    let shape = net.shape();
    let maxnet = SubnetSpec::maxnet(&shape);
    let cut = SubnetSpec {
        heads: 6.into(),
        ffn: 768.into(),
        ..maxnet.clone()
    };
    let before = evaluate_blocks(net, &maxnet, false, &data, 2).unwrap();
    let cut_before = evaluate_blocks(net, &cut, false, &data, 2).unwrap();
    let (ids, _) = batch(net, &data[..2]);
    let logits_before = net.forward(&ids, &maxnet).unwrap().logits;

    let batches = vec![batch(net, &data[..2]), batch(net, &data[2..])];
    let orders = rewire(net, &batches).unwrap();

    assert_eq!(orders.len(), shape.layers);
    for o in &orders {
        assert!(is_permutation(&o.heads, shape.heads) && is_permutation(&o.ffn, shape.ffn));
    }
    assert_eq!(&orders[3].heads[6..], &[0, 1, 2], "{:?}", orders[3].heads);
    let last3 = &orders[3].ffn[shape.ffn - 3..];
    assert_eq!(last3, &[0, 1, 2], "silenced neurons not ranked last");
    assert!(
        orders
            .iter()
            .any(|o| o.ffn[..10] != (0..10).collect::<Vec<_>>()),
        "importance changed no order"
    );

    // A permutation: the full teacher computes the same logits.
    let logits_after = net.forward(&ids, &maxnet).unwrap().logits;
    let diff = (logits_after - &logits_before)
        .unwrap()
        .abs()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let scale = logits_before
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    // Only the summation order changes: 30 layers with SmolLM2's large residual activations
    // drift by about 2e-4 of the largest logit here; a misplaced head or neuron moves them O(1).
    assert!(
        diff < 1e-3 * scale,
        "maxnet logits moved by {diff} (largest {scale})"
    );
    let after = evaluate_blocks(net, &maxnet, false, &data, 2).unwrap();
    assert!((after.loss - before.loss).abs() < 1e-4);
    // The cut keeps the important half: it loses less than the cut of the original order.
    let cut_after = evaluate_blocks(net, &cut, false, &data, 2).unwrap();
    assert!(
        cut_after.loss < cut_before.loss,
        "rewired cut {} vs plain cut {}",
        cut_after.loss,
        cut_before.loss
    );
}

#[test]
fn a_rewired_decoder_run_reopens_with_its_orders() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::decoder_space_config([1, 1, 1], vec![768, 1536], 2);
    c.name = "decoder-rewire-test".into();
    c.rewire = true;
    c.rewire_batches = 2;
    c.palette.evaluate_at_end = false;
    let mut run = DecoderRun::create(c, dir.path()).unwrap();
    let mut logs = Vec::new();
    let mut ctl = |_: usize, _: &mut dyn FnMut(TrainEvent)| Flow::Continue;
    let mut sink = |e: TrainEvent| {
        if let TrainEvent::Log { message, .. } = e {
            logs.push(message);
        }
    };
    assert!(!run.run(&mut ctl, &mut sink).unwrap());
    assert!(
        logs.iter().any(|l| l.contains("rewired KV groups")),
        "{logs:?}"
    );
    let minnet: SubnetSpec = "layers=0,29;heads=6;ffn=768".parse().unwrap();
    let blocks = &run.task.valid_blocks.clone();
    let trained = evaluate_blocks(run.task.net.net(), &minnet, true, blocks, 2).unwrap();
    drop(run);

    let back = DecoderRun::open_trained(dir.path()).unwrap();
    let reopened = evaluate_blocks(back.task.net.net(), &minnet, true, blocks, 2).unwrap();
    assert!(
        (reopened.loss - trained.loss).abs() < 1e-5,
        "reopened {} vs trained {}",
        reopened.loss,
        trained.loss
    );
}
