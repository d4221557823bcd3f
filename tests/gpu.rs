//! The GPU path against the CPU path (built with `--features cuda`, run where an NVIDIA GPU is:
//! `scripts/build-cuda.sh` builds it, the README's GPU section says how to run it). References
//! are the CPU's own results, which the CPU tests check against Hugging Face fixtures.
#![cfg(feature = "cuda")]

mod common;

use candle_core::{DType, Device, Tensor};
use mlfs_studio::cli::random_llama::write_random_teacher;
use mlfs_studio::mlfs::adapters::AdaptedSupernet;
use mlfs_studio::model::device::Precision;
use mlfs_studio::model::llama::{DecoderTeacher, LlamaConfig};
use mlfs_studio::model::tokenizer::batch_tensors;
use mlfs_studio::model::{EncoderTeacher, SubnetSpec};
use mlfs_studio::train::config::{DecoderConfig, DeviceChoice, RunConfig};
use mlfs_studio::train::optim::AdamW;
use mlfs_studio::train::protocol::TrainEvent;
use mlfs_studio::train::run::Flow;
use mlfs_studio::train::task::{StepInput, Task};
use mlfs_studio::train::{ClassifierRun, DecoderRun};
use std::path::Path;

fn gpu() -> Device {
    Device::new_cuda(0).expect("an NVIDIA GPU")
}

/// The largest magnitude in an f32 tensor (a tolerance's scale).
fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a
        .to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let b = b
        .to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    mlfs_studio::util::max_abs_diff(&a, &b).unwrap()
}

#[test]
fn encoder_forward_on_the_gpu_equals_the_cpu() {
    let dir = common::assets().join("minilm-l3");
    let cpu = EncoderTeacher::load(&dir).unwrap();
    let gpu_teacher = EncoderTeacher::load_on(&dir, &gpu()).unwrap();
    let texts: Vec<String> = [
        "a fine film",
        "the worst service I have ever had, truly awful",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let batch = cpu.tokenizer.encode_batch(&texts, 64).unwrap();
    for spec in [
        "layers=0,1,2;heads=12;ffn=1536",
        "layers=0,2;heads=6;ffn=768;hidden=256",
    ] {
        let spec: SubnetSpec = spec.parse().unwrap();
        let (ids, mask) = batch_tensors(&batch, &Device::Cpu).unwrap();
        let want = cpu.encoder.forward(&ids, &mask, &spec).unwrap();
        let (ids, mask) = batch_tensors(&batch, &gpu()).unwrap();
        let got = gpu_teacher.encoder.forward(&ids, &mask, &spec).unwrap();
        let d = max_abs_diff(want.last(), got.last());
        println!("encoder {spec}: max |GPU − CPU| = {d:.2e}");
        assert!(d <= 1e-4, "{spec}: {d}");
    }
}

/// A small random Llama folder (the shipped WordPiece tokenizer; end of text = [SEP]).
fn small_llama(dir: &Path) {
    let config = LlamaConfig {
        vocab_size: 30522,
        hidden_size: 256,
        intermediate_size: 512,
        num_hidden_layers: 4,
        num_attention_heads: 8,
        num_key_value_heads: 4,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        max_position_embeddings: 512,
        tie_word_embeddings: true,
        head_dim: Some(32),
        bos_token_id: Some(101),
        eos_token_id: Some(102),
        layer_heads: None,
        layer_intermediate_sizes: None,
    };
    let tokenizer = common::assets().join("minilm-l3/tokenizer.json");
    write_random_teacher(&config, &tokenizer, dir, 7).unwrap();
}

#[test]
fn decoder_forward_on_the_gpu_equals_the_cpu_in_f32_and_agrees_in_bf16() {
    let dir = tempfile::tempdir().unwrap();
    small_llama(dir.path());
    let cpu = DecoderTeacher::load(dir.path()).unwrap();
    let mut on_gpu = DecoderTeacher::load_on(dir.path(), &gpu()).unwrap();
    let ids: Vec<u32> = (0..96u32).map(|i| 1000 + (i * 7919) % 20000).collect();
    let input = |d: &Device| {
        Tensor::new(ids.as_slice(), d)
            .unwrap()
            .unsqueeze(0)
            .unwrap()
    };
    for spec in [
        "layers=0,1,2,3;heads=8;ffn=512",
        "layers=0,3;heads=4;ffn=256",
    ] {
        let spec: SubnetSpec = spec.parse().unwrap();
        let want = cpu.decoder.forward(&input(&Device::Cpu), &spec).unwrap();
        let got = on_gpu.decoder.forward(&input(&gpu()), &spec).unwrap();
        let d = max_abs_diff(&want.last_hidden, &got.last_hidden);
        println!("decoder f32 {spec}: max |GPU − CPU| on hidden states = {d:.2e}");
        assert!(d <= 1e-4, "{spec}: {d}");
    }
    on_gpu.decoder.set_precision(Precision::Bf16).unwrap();
    let spec = SubnetSpec::maxnet(&cpu.decoder.shape());
    // Four sequences of 128 positions: enough positions for a rate, not a handful.
    let ids: Vec<u32> = (0..512u32).map(|i| 1000 + (i * 7919) % 20000).collect();
    let batch = |d: &Device| Tensor::from_vec(ids.clone(), (4, 128), d).unwrap();
    let rows = |logits: &Tensor| -> Vec<Vec<f32>> {
        let l = logits
            .to_device(&Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        l.flatten_to(1).unwrap().to_vec2::<f32>().unwrap()
    };
    let argmax = |r: &[f32]| {
        (0..r.len())
            .max_by(|&a, &b| r[a].total_cmp(&r[b]))
            .unwrap_or(0)
    };
    let want = rows(
        &cpu.decoder
            .forward(&batch(&Device::Cpu), &spec)
            .unwrap()
            .logits,
    );
    let got = rows(
        &on_gpu
            .decoder
            .forward(&batch(&gpu()), &spec)
            .unwrap()
            .logits,
    );
    // Random weights leave many near-ties between the two best tokens, which bf16 rounding may
    // swap; positions where f32 is clear (top-two margin above 0.05) must agree.
    let (mut same, mut clear, mut clear_same) = (0, 0, 0);
    for (w, g) in want.iter().zip(&got) {
        let best = argmax(w);
        let runner_up = (0..w.len())
            .filter(|&i| i != best)
            .map(|i| w[i])
            .fold(f32::MIN, f32::max);
        let agree = best == argmax(g);
        same += agree as usize;
        if w[best] - runner_up > 0.05 {
            clear += 1;
            clear_same += agree as usize;
        }
    }
    let all = same as f64 / want.len() as f64;
    let on_clear = clear_same as f64 / clear.max(1) as f64;
    println!("decoder bf16: top-1 agreement with f32 on the CPU {all:.4} of {} positions, {on_clear:.4} of the {clear} with a clear f32 winner", want.len());
    assert!(
        clear >= want.len() / 4,
        "too few clear positions to judge: {clear}"
    );
    assert!(
        on_clear >= 0.99,
        "bf16 top-1 agreement {on_clear} where f32 is clear"
    );
}

#[test]
fn one_training_step_has_the_same_adapter_gradients_on_both_devices() {
    let grads_on = |device: DeviceChoice| -> Vec<(String, Tensor)> {
        let dir = tempfile::tempdir().unwrap();
        let mut c = common::small_config([1, 1, 1], 16, 32);
        c.rewire = false;
        c.device = device;
        let mut run = ClassifierRun::create(c, dir.path()).unwrap();
        run.task.net.set_stage(Some(1)).unwrap();
        let params = run.task.net.trainable(1);
        let names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
        let opt = AdamW::new(params, 0.0).unwrap();
        let batch = run.step_indices(1, 0);
        let students = run.students(1);
        let input = StepInput {
            config: &run.config,
            batch: &batch,
            students: &students,
            opt: &opt,
            share: mlfs_studio::train::parallel::BatchShare::WHOLE,
        };
        let mut grads = Vec::new();
        run.task.student_gradients(&input, &mut grads).unwrap();
        names
            .into_iter()
            .zip(grads)
            .filter_map(|(n, g)| Some((n, g?.to_device(&Device::Cpu).ok()?)))
            .collect()
    };
    let cpu = grads_on(DeviceChoice::Cpu);
    let on_gpu = grads_on(DeviceChoice::Cuda(0));
    assert_eq!(cpu.len(), on_gpu.len());
    let mut worst = 0f32;
    for ((name, a), (_, b)) in cpu.iter().zip(&on_gpu) {
        let scale = max_abs(a).max(1e-12);
        let rel = max_abs_diff(a, b) / scale;
        worst = worst.max(rel);
        assert!(rel <= 1e-3, "{name}: relative difference {rel}");
    }
    println!(
        "adapter gradients: worst relative |GPU − CPU| = {worst:.2e} over {} tensors",
        cpu.len()
    );
}

#[test]
fn a_short_bf16_decoder_run_lowers_the_validation_loss() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = dir.path().join("teacher");
    small_llama(&teacher);
    let a = common::assets();
    let mut c = common::small_config([30, 0, 0], 8, 64);
    c.teacher = teacher;
    c.data.train = a.join("python-code/train.jsonl");
    c.data.dev = a.join("python-code/valid.jsonl");
    c.stages[0].learning_rate = 2e-3;
    c.eval_every = 30;
    c.device = DeviceChoice::Cuda(0);
    c.precision = Precision::Bf16;
    c.palette.evaluate_at_end = false;
    c.distill.alpha = 0.5;
    c.distill.beta = 1e-5;
    c.lm = Some(DecoderConfig {
        train_base_weights: true,
        students: vec!["layers=0,3;heads=8;ffn=512".into()],
        eval_blocks: 8,
        recompute_activations: false,
        ..DecoderConfig::default()
    });
    let mut run = DecoderRun::create(c, &dir.path().join("run")).unwrap();
    let mut losses = Vec::new();
    let mut sink = |e: TrainEvent| {
        if let TrainEvent::DecoderEval { results, .. } = e {
            losses.extend(
                results
                    .iter()
                    .filter(|r| r.role == "student")
                    .map(|r| r.loss),
            );
        }
    };
    let mut ctl = |_: usize, _: &mut dyn FnMut(TrainEvent)| Flow::Continue;
    assert!(!run.run(&mut ctl, &mut sink).unwrap());
    println!("bf16 decoder run, student validation loss: {losses:?}");
    assert_eq!(losses.len(), 2);
    assert!(losses[1] < losses[0] - 0.5, "{losses:?}");
    assert!(run.task.device().is_cuda());
}

/// One decoder step's gradients under bf16 (bf16 activations between the products, f32
/// residual stream, norms and master weights) against the same step in f32, both on the GPU:
/// adapters (stage 0) and all weights (full fine-tuning), each with kept layer graphs and with
/// recomputed layers. bf16 keeps 8 significant bits: every gradient within 5 % of its largest
/// entry (a wrong dtype path is off by far more or fails outright).
#[test]
fn a_bf16_decoder_step_has_the_f32_gradients_within_bf16_rounding() {
    use mlfs_studio::mlfs::adapters::AdaptedSupernet;
    let dir = tempfile::tempdir().unwrap();
    let teacher = dir.path().join("teacher");
    small_llama(&teacher);
    let a = common::assets();
    let grads_in = |precision: Precision, full: bool, recompute: bool| -> Vec<(String, Tensor)> {
        let mut c = common::small_config([1, 1, 1], 4, 64);
        c.teacher = teacher.clone();
        c.data.train = a.join("python-code/train.jsonl");
        c.data.dev = a.join("python-code/valid.jsonl");
        c.rewire = false;
        c.device = DeviceChoice::Cuda(0);
        c.precision = precision;
        c.distill.alpha = 0.5;
        c.distill.beta = 1e-3;
        c.lm = Some(DecoderConfig {
            train_base_weights: full,
            students: vec!["layers=0,1,3;heads=8;ffn=512".into()],
            eval_blocks: 2,
            recompute_activations: recompute,
            ..DecoderConfig::default()
        });
        let out = dir
            .path()
            .join(format!("run-{precision:?}-{full}-{recompute}"));
        let mut run = DecoderRun::create(c, &out).unwrap();
        run.task.net.set_stage(Some(0)).unwrap();
        let params = run.task.net.trainable(0);
        let names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
        let opt = AdamW::new(params, 0.0).unwrap();
        let batch = run.step_indices(0, 0);
        let students = run.students(0);
        let input = StepInput {
            config: &run.config,
            batch: &batch,
            students: &students,
            opt: &opt,
            share: mlfs_studio::train::parallel::BatchShare::WHOLE,
        };
        let mut grads = Vec::new();
        run.task.student_gradients(&input, &mut grads).unwrap();
        names
            .into_iter()
            .zip(grads)
            .filter_map(|(n, g)| Some((n, g?.to_device(&Device::Cpu).ok()?)))
            .collect()
    };
    for full in [false, true] {
        let reference = grads_in(Precision::F32, full, true);
        assert!(reference.len() >= 6, "{} gradients", reference.len());
        for recompute in [true, false] {
            let bf16 = grads_in(Precision::Bf16, full, recompute);
            assert_eq!(reference.len(), bf16.len());
            let mut worst = 0f32;
            for ((name, want), (_, got)) in reference.iter().zip(&bf16) {
                assert_eq!(got.dtype(), DType::F32, "{name}: gradients stay f32");
                let scale = max_abs(want);
                if scale == 0.0 {
                    continue;
                }
                let rel = max_abs_diff(want, got) / scale;
                worst = worst.max(rel);
                assert!(
                    rel <= 5e-2,
                    "{name} (full {full}, recompute {recompute}): {rel}"
                );
            }
            println!(
                "bf16 vs f32 decoder gradients (full {full}, recompute {recompute}): worst \
                 relative difference {worst:.2e} over {} tensors",
                bf16.len()
            );
        }
    }
}

/// The gradient norm from the fused sum-of-squares kernel equals the CPU's (f64 sums there)
/// for tensors of many sizes (a partial block, one block, the 2,048-block cap, non-multiples).
#[test]
fn the_fused_gpu_gradient_norm_equals_the_cpu_norm() {
    let sizes = [1usize, 3, 255, 2048, 4099, 1 << 20, 3 * (1 << 20) + 17];
    let cpu: Vec<Option<Tensor>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| Some(Tensor::randn(0f32, 1f32 + i as f32, n, &Device::Cpu).unwrap()))
        .chain([None])
        .collect();
    let on_gpu: Vec<Option<Tensor>> = cpu
        .iter()
        .map(|g| g.as_ref().map(|t| t.to_device(&gpu()).unwrap()))
        .collect();
    let want = AdamW::grad_norm(&cpu).unwrap();
    let got = AdamW::grad_norm(&on_gpu).unwrap();
    println!("gradient norm: GPU {got}, CPU {want}");
    assert!((got - want).abs() <= 1e-6 * want, "GPU {got} vs CPU {want}");
    // Bit for bit the same on a second call (fixed partials, fixed order).
    assert_eq!(AdamW::grad_norm(&on_gpu).unwrap(), got);
}

/// The fused causal softmax equals candle's own scale, causal-mask add and softmax on the CPU
/// (autograd over elementary ops), values and gradients: in f32 to float rounding and in bf16
/// within its rounding, with and without cached positions, one query and long rows.
#[test]
fn the_fused_causal_softmax_equals_candles_masked_softmax_with_gradients() {
    use mlfs_studio::model::attention::causal_mask;
    use mlfs_studio::model::causal_softmax_cuda::causal_softmax;
    let scale = 0.125;
    for (t, past) in [(7usize, 0usize), (5, 3), (1, 4), (40, 0), (3, 70)] {
        let s = past + t;
        let scores = Tensor::randn(0f32, 8f32, (2, 3, t, s), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 1f32, (2, 3, t, s), &Device::Cpu).unwrap();
        let v = candle_core::Var::from_tensor(&scores).unwrap();
        let mask = causal_mask(t, past, &Device::Cpu).unwrap();
        let masked = (v.as_tensor() * scale)
            .unwrap()
            .broadcast_add(&mask)
            .unwrap();
        let want = candle_nn::ops::softmax(&masked, candle_core::D::Minus1).unwrap();
        let grads = (&want * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let want_grad = grads.get(v.as_tensor()).unwrap().clone();
        for (dtype, tol) in [(DType::F32, 1e-5f32), (DType::BF16, 1e-2)] {
            let on_gpu = |x: &Tensor| x.to_dtype(dtype).unwrap().to_device(&gpu()).unwrap();
            let gv = candle_core::Var::from_tensor(&on_gpu(&scores)).unwrap();
            let got = causal_softmax(gv.as_tensor(), scale, past).unwrap();
            let g = (&got * on_gpu(&w))
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let got_grad = g.get(gv.as_tensor()).unwrap().to_dtype(DType::F32).unwrap();
            let got = got.to_dtype(DType::F32).unwrap();
            let (dp, dg) = (
                max_abs_diff(&got, &want),
                max_abs_diff(&got_grad, &want_grad),
            );
            let g_max = max_abs(&want_grad);
            println!("T {t}, past {past}, {dtype:?}: probabilities {dp:.2e}, gradients {dg:.2e} of {g_max:.2e}");
            assert!(
                dp <= tol,
                "probabilities differ by {dp} (T {t}, past {past}, {dtype:?})"
            );
            assert!(
                dg <= tol * g_max.max(1e-3),
                "gradients differ by {dg} (T {t}, past {past}, {dtype:?})"
            );
        }
    }
}

/// The fused SwiGLU equals candle's `silu(gate) * up` on the CPU (its own autograd), values
/// and both gradients, in f32 and within bf16 rounding.
#[test]
fn the_fused_swiglu_equals_candles_silu_product_with_gradients() {
    use mlfs_studio::model::swiglu_cuda::swiglu;
    // Odd sizes: a partial block; values where the SiLU bends and saturates.
    let (gate, up, w) = (
        Tensor::randn(0f32, 4f32, (37, 129), &Device::Cpu).unwrap(),
        Tensor::randn(0f32, 1f32, (37, 129), &Device::Cpu).unwrap(),
        Tensor::randn(0f32, 1f32, (37, 129), &Device::Cpu).unwrap(),
    );
    let (a, u) = (
        candle_core::Var::from_tensor(&gate).unwrap(),
        candle_core::Var::from_tensor(&up).unwrap(),
    );
    let want = (a.as_tensor().silu().unwrap() * u.as_tensor()).unwrap();
    let grads = (&want * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let (want_da, want_du) = (
        grads.get(a.as_tensor()).unwrap(),
        grads.get(u.as_tensor()).unwrap(),
    );
    for (dtype, tol) in [(DType::F32, 1e-5f32), (DType::BF16, 2e-2)] {
        let on_gpu = |x: &Tensor| x.to_dtype(dtype).unwrap().to_device(&gpu()).unwrap();
        let (ga, gu) = (
            candle_core::Var::from_tensor(&on_gpu(&gate)).unwrap(),
            candle_core::Var::from_tensor(&on_gpu(&up)).unwrap(),
        );
        let got = swiglu(ga.as_tensor(), gu.as_tensor()).unwrap();
        let g = (&got * on_gpu(&w))
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let scale = max_abs;
        for (what, got, want) in [
            ("values", got.clone(), want.clone()),
            (
                "gate gradient",
                g.get(ga.as_tensor()).unwrap().clone(),
                want_da.clone(),
            ),
            (
                "up gradient",
                g.get(gu.as_tensor()).unwrap().clone(),
                want_du.clone(),
            ),
        ] {
            let d = max_abs_diff(&got, &want);
            println!("swiglu {dtype:?} {what}: {d:.2e} of {:.2e}", scale(&want));
            assert!(d <= tol * scale(&want), "{what} differ by {d} in {dtype:?}");
        }
    }
}

#[test]
fn bf16_on_the_cpu_is_refused_with_a_reason() {
    let mut c: RunConfig = common::small_config([1, 0, 0], 8, 32);
    c.device = DeviceChoice::Cpu;
    c.precision = Precision::Bf16;
    let dir = tempfile::tempdir().unwrap();
    let err = match ClassifierRun::create(c, dir.path()) {
        Ok(_) => panic!("bf16 on the CPU was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("Bf16") && err.contains("GPU"), "{err}");
}

#[test]
fn a_run_stopped_on_the_gpu_resumes_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::small_config([4, 0, 0], 16, 32);
    c.device = DeviceChoice::Cuda(0);
    common::train_until(c, dir.path(), 2);
    let placement = mlfs_studio::train::run::Placement {
        device: Some(DeviceChoice::Cpu),
        precision: None,
    };
    let mut resumed = ClassifierRun::resume_on(dir.path(), placement).unwrap();
    assert_eq!(resumed.global_step, 2);
    assert!(resumed.task.device().is_cpu());
    let mut events = Vec::new();
    let mut go = |_: usize, _: &mut dyn FnMut(TrainEvent)| Flow::Continue;
    assert!(!resumed.run(&mut go, &mut |e| events.push(e)).unwrap());
    let started = events.iter().find_map(|e| match e {
        TrainEvent::RunStarted { device, .. } => Some(device.clone()),
        _ => None,
    });
    assert_eq!(started.as_deref(), Some("cpu"));
    assert_eq!(resumed.global_step, 4);
}

#[test]
fn the_fused_gpu_adamw_takes_the_same_steps_as_the_cpu_one() {
    use mlfs_studio::model::param::Param;
    // Deterministic values in [-1, 1) without a random generator.
    let values = |seed: usize| -> Tensor {
        let v: Vec<f32> = (0..64 * 33)
            .map(|i| ((i * 7919 + seed * 104_729) % 2000) as f32 / 1000.0 - 1.0)
            .collect();
        Tensor::from_vec(v, (64, 33), &Device::Cpu).unwrap()
    };
    let run = |device: &Device| -> Vec<f32> {
        let value = values(1).to_device(device).unwrap();
        let var = candle_core::Var::from_tensor(&value).unwrap();
        let param = Param {
            name: "w".into(),
            var: var.clone(),
            decay: true,
        };
        let mut opt = AdamW::new(vec![param], 0.01).unwrap();
        for step in 0..3u64 {
            let g = values(10 + step as usize).to_device(device).unwrap();
            // Clipping at 1.0 scales the gradient: the factor must reach the kernels too.
            opt.step(&[Some(g)], 1e-2, 1.0).unwrap();
        }
        var.as_tensor()
            .flatten_all()
            .unwrap()
            .to_device(&Device::Cpu)
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let (cpu, on_gpu) = (run(&Device::Cpu), run(&gpu()));
    let worst = cpu
        .iter()
        .zip(&on_gpu)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("AdamW after 3 steps: max |GPU − CPU| = {worst:.2e}");
    assert!(worst <= 1e-5, "{worst}");
}

#[test]
fn a_run_stopped_on_the_cpu_resumes_on_the_gpu_with_its_optimizer_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::small_config([4, 0, 0], 16, 32);
    c.device = DeviceChoice::Cpu;
    common::train_until(c, dir.path(), 2);
    let placement = mlfs_studio::train::run::Placement {
        device: Some(DeviceChoice::Cuda(0)),
        precision: None,
    };
    let mut resumed = ClassifierRun::resume_on(dir.path(), placement).unwrap();
    assert!(resumed.task.device().is_cuda());
    let mut go = |_: usize, _: &mut dyn FnMut(TrainEvent)| Flow::Continue;
    assert!(!resumed.run(&mut go, &mut |_| {}).unwrap());
    assert_eq!(resumed.global_step, 4);
}

#[test]
fn the_parallel_gpu_sum_equals_the_cpu_sum_in_value_and_gradient() {
    use mlfs_studio::model::ops::sum_all_parallel;
    // 3 · 2^20 elements: split over many blocks on the GPU; a prime count falls back to one.
    for n in [3 << 20, 1_000_003] {
        // Positive values (mean 0.5): the sum is large, so a relative bound is meaningful.
        let values: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 / 1000.0).collect();
        let cpu = Tensor::from_vec(values, n, &Device::Cpu).unwrap();
        let expected = cpu
            .to_dtype(candle_core::DType::F64)
            .unwrap()
            .sum_all()
            .unwrap();
        let expected = expected.to_scalar::<f64>().unwrap();
        let var = candle_core::Var::from_tensor(&cpu.to_device(&gpu()).unwrap()).unwrap();
        let sum = sum_all_parallel(&(var.as_tensor() * 2.0).unwrap()).unwrap();
        let got = sum.to_scalar::<f32>().unwrap() as f64;
        let rel = (got - 2.0 * expected).abs() / (2.0 * expected);
        assert!(
            rel < 1e-4,
            "{n}: {got} vs {} (relative error {rel})",
            2.0 * expected
        );
        let grads = sum.backward().unwrap();
        let g = grads
            .get(var.as_tensor())
            .unwrap()
            .to_device(&Device::Cpu)
            .unwrap();
        let g = g.to_vec1::<f32>().unwrap();
        assert!(
            g.iter().all(|&x| x == 2.0),
            "{n}: gradient not 2 everywhere"
        );
    }
}

#[test]
fn the_gpu_trainable_product_has_candles_value_and_gradients() {
    use mlfs_studio::model::ops::trainable_matmul_t;
    let values = |n: usize, k: u32| -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ k) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    };
    let (n, d_in, d_out) = (96, 64, 80);
    let x_cpu = Tensor::from_vec(values(n * d_in, 1), (n, d_in), &Device::Cpu).unwrap();
    let w_cpu = Tensor::from_vec(values(d_out * d_in, 2), (d_out, d_in), &Device::Cpu).unwrap();
    let g_cpu = Tensor::from_vec(values(n * d_out, 3), (n, d_out), &Device::Cpu).unwrap();
    // Reference: candle's own product and backward on the CPU.
    let (x, w) = (
        candle_core::Var::from_tensor(&x_cpu).unwrap(),
        candle_core::Var::from_tensor(&w_cpu).unwrap(),
    );
    let y = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
    let grads = (&y * &g_cpu)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let (gx, gw) = (
        grads.get(x.as_tensor()).unwrap().clone(),
        grads.get(w.as_tensor()).unwrap().clone(),
    );
    for (compute, tol) in [
        (candle_core::DType::F32, 1e-4),
        (candle_core::DType::BF16, 0.05),
    ] {
        let xg = candle_core::Var::from_tensor(&x_cpu.to_device(&gpu()).unwrap()).unwrap();
        let wg = candle_core::Var::from_tensor(&w_cpu.to_device(&gpu()).unwrap()).unwrap();
        let yg = trainable_matmul_t(xg.as_tensor(), wg.as_tensor(), compute).unwrap();
        assert_eq!(yg.dtype(), candle_core::DType::F32);
        let g = g_cpu.to_device(&gpu()).unwrap();
        let gs = (&yg * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let back = |t: &Tensor| t.to_device(&Device::Cpu).unwrap();
        let scale = max_abs;
        for (what, ours, theirs) in [
            ("value", back(&yg), y.clone()),
            (
                "x gradient",
                back(gs.get(xg.as_tensor()).unwrap()),
                gx.clone(),
            ),
            (
                "w gradient",
                back(gs.get(wg.as_tensor()).unwrap()),
                gw.clone(),
            ),
        ] {
            assert_eq!(ours.dims(), theirs.dims(), "{what}");
            let rel = max_abs_diff(&ours, &theirs) / scale(&theirs);
            assert!(rel <= tol, "{compute:?} {what}: relative error {rel}");
        }
    }
}

#[test]
fn the_vector_casts_equal_candles_casts_bit_for_bit() {
    use mlfs_studio::model::ops::cast;
    // Rounding ties (odd and even), the largest finite value, infinities, NaN, subnormals,
    // signed zeros and ordinary values; 1027 of them so the last thread gets a partial group.
    let mut values: Vec<f32> = vec![
        1.0 + f32::EPSILON * 64.0,
        1.0 + f32::EPSILON * 192.0,
        f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1e-40,
        -0.0,
        0.0,
    ];
    values.extend((0..1018).map(|i| ((i * 7919) % 4001) as f32 / 37.0 - 54.0));
    let cpu = Tensor::from_vec(values.clone(), values.len(), &Device::Cpu).unwrap();
    let bits = |t: &Tensor| -> Vec<u32> {
        let v: Vec<f32> = t
            .to_device(&Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1()
            .unwrap();
        v.iter()
            .map(|x| if x.is_nan() { u32::MAX } else { x.to_bits() })
            .collect()
    };
    let on_gpu = cpu.to_device(&gpu()).unwrap();
    // f32 → bf16 (rounded to nearest even), whole and from an unaligned start (candle's path).
    for (ours, theirs) in [
        (
            cast(&on_gpu, DType::BF16).unwrap(),
            cpu.to_dtype(DType::BF16).unwrap(),
        ),
        (
            cast(&on_gpu.narrow(0, 1, 1026).unwrap(), DType::BF16).unwrap(),
            cpu.narrow(0, 1, 1026)
                .unwrap()
                .to_dtype(DType::BF16)
                .unwrap(),
        ),
    ] {
        assert_eq!(ours.dtype(), DType::BF16);
        assert_eq!(bits(&ours), bits(&theirs));
    }
    // bf16 → f32 is exact.
    let half = cpu.to_dtype(DType::BF16).unwrap();
    let back = cast(&half.to_device(&gpu()).unwrap(), DType::F32).unwrap();
    assert_eq!(back.dtype(), DType::F32);
    assert_eq!(bits(&back), bits(&half));
}

#[test]
fn the_trainable_rms_norm_on_the_gpu_equals_the_cpu_with_gradients() {
    use mlfs_studio::model::rms_norm::trainable_rms_norm;
    let values = |n: usize, k: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + k * 104_729) % 2000) as f32 / 1000.0 - 1.0)
            .collect()
    };
    let run = |device: &Device| {
        let x = Tensor::from_vec(values(6 * 96, 1), (2, 3, 96), device).unwrap();
        let g = Tensor::from_vec(values(96, 2), 96, device).unwrap();
        let w = Tensor::from_vec(values(6 * 96, 3), (2, 3, 96), device).unwrap();
        let (xv, gv) = (
            candle_core::Var::from_tensor(&x).unwrap(),
            candle_core::Var::from_tensor(&g).unwrap(),
        );
        let y = trainable_rms_norm(xv.as_tensor(), gv.as_tensor(), 1e-5).unwrap();
        let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
        [
            y,
            grads.get(xv.as_tensor()).unwrap().clone(),
            grads.get(gv.as_tensor()).unwrap().clone(),
        ]
        .map(|t| t.to_device(&Device::Cpu).unwrap())
    };
    let (cpu, on_gpu) = (run(&Device::Cpu), run(&gpu()));
    for (what, a, b) in [("value", 0, 0), ("x gradient", 1, 1), ("γ gradient", 2, 2)] {
        let d = max_abs_diff(&cpu[a], &on_gpu[b]);
        assert!(d < 1e-4, "{what}: {d}");
    }
}

#[test]
fn the_head_loss_kernel_equals_the_cpu_loss_and_gradients() {
    use mlfs_studio::mlfs::distill::DistillWeights;
    use mlfs_studio::mlfs::head_loss::head_loss;
    use mlfs_studio::mlfs::head_loss_terms::HeadLossOptions;
    let values = |n: usize, k: usize, amp: f32| -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + k * 104_729) % 2000) as f32 / 1000.0 - 1.0) * amp)
            .collect()
    };
    // 37 positions (one chunk, a row count no block size divides), 16-wide states, a 3001-token
    // vocabulary (threads with no value of a row), every fifth position unscored.
    let (n, d, v) = (37, 16, 3001);
    let targets: Vec<Option<u32>> = (0..n)
        .map(|i| (i % 5 != 4).then_some(((i * 613) % v) as u32))
        .collect();
    let tensors = |device: &Device| {
        let t = |k, len, shape: (usize, usize), amp| {
            Tensor::from_vec(values(len, k, amp), shape, device).unwrap()
        };
        (
            t(1, n * d, (n, d), 1.0),
            t(2, v * d, (v, d), 2.0),
            t(3, n * d, (n, d), 1.0),
            t(4, v * d, (v, d), 2.0),
        )
    };
    let options = |grad_head| HeadLossOptions {
        weights: DistillWeights {
            alpha: 0.7,
            beta: 0.0,
            temperature: 2.0,
        },
        grad_hidden: true,
        grad_head,
        compute: DType::F32,
    };
    let run = |device: &Device| {
        let (h, head, th, thead) = tensors(device);
        head_loss(&h, &head, &targets, Some((&th, &thead)), options(true)).unwrap()
    };
    let (cpu, on_gpu) = (run(&Device::Cpu), run(&gpu()));
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-9);
    assert!(
        rel(on_gpu.ce_sum, cpu.ce_sum) < 1e-5,
        "{} {}",
        on_gpu.ce_sum,
        cpu.ce_sum
    );
    assert!(
        rel(on_gpu.kd_sum, cpu.kd_sum) < 1e-4,
        "{} {}",
        on_gpu.kd_sum,
        cpu.kd_sum
    );
    assert_eq!((on_gpu.hits, on_gpu.count), (cpu.hits, cpu.count));
    for (what, a, b) in [
        ("hidden", &on_gpu.grad_hidden, &cpu.grad_hidden),
        ("head", &on_gpu.grad_head, &cpu.grad_head),
    ] {
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        let scale = max_abs(b);
        let diff = max_abs_diff(a, b);
        assert!(
            diff <= 1e-4 * scale,
            "{what} gradient: {diff} (largest {scale})"
        );
    }
    // bf16 products: the same loss to bf16's precision.
    let (h, head, th, thead) = tensors(&gpu());
    let mut o = options(false);
    o.compute = DType::BF16;
    let half = head_loss(&h, &head, &targets, Some((&th, &thead)), o).unwrap();
    assert!(
        rel(half.ce_sum, cpu.ce_sum) < 1e-2,
        "{} {}",
        half.ce_sum,
        cpu.ce_sum
    );
}

#[cfg(feature = "nccl")]
#[test]
fn nccl_sums_on_the_gpu_and_one_rank_through_it_trains_bit_for_bit() {
    use mlfs_studio::train::parallel::nccl::{new_id, NcclRank};
    use mlfs_studio::train::parallel::Collective;
    let mut rank = NcclRank::new(&gpu(), 0, 1, &new_id().unwrap()).unwrap();
    let x = Tensor::new(&[1.5f32, -2.0, 3.25], &gpu()).unwrap();
    let summed = rank.all_reduce_sum(&x).unwrap();
    assert_eq!(summed.to_vec1::<f32>().unwrap(), vec![1.5, -2.0, 3.25]);

    let dir = tempfile::tempdir().unwrap();
    let teacher = dir.path().join("teacher");
    small_llama(&teacher);
    let a = common::assets();
    let mut c = common::small_config([4, 2, 0], 4, 64);
    c.teacher = teacher;
    c.data.train = a.join("python-code/train.jsonl");
    c.data.dev = a.join("python-code/valid.jsonl");
    c.device = DeviceChoice::Cuda(0);
    c.palette.evaluate_at_end = false;
    c.lm = Some(DecoderConfig {
        students: vec!["layers=0,3;heads=8;ffn=512".into()],
        eval_blocks: 4,
        ..DecoderConfig::default()
    });
    let (alone, group) = (dir.path().join("alone"), dir.path().join("group"));
    let mut go = |_: usize, _: &mut dyn FnMut(TrainEvent)| Flow::Continue;
    let mut run = DecoderRun::create(c.clone(), &alone).unwrap();
    run.run(&mut go, &mut |_| {}).unwrap();
    let mut run = DecoderRun::create(c, &group).unwrap();
    run.set_group(Box::new(
        NcclRank::new(&gpu(), 0, 1, &new_id().unwrap()).unwrap(),
    ));
    run.run(&mut go, &mut |_| {}).unwrap();
    assert_eq!(
        common::metrics_without_timings(&alone),
        common::metrics_without_timings(&group)
    );
}
