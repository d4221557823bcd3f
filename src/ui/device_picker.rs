//! The run's device and precision: a combo of the CPU and the GPUs found (name, memory), and
//! why there are none when there are none.

use crate::model::device::{gpus, no_gpu_reason, DeviceChoice, GpuInfo, Precision};
use crate::train::config::RunConfig;
use egui::{RichText, Ui};
use std::sync::OnceLock;

/// The GPUs of this machine, asked once per process (starting CUDA takes a while).
pub fn found_gpus() -> &'static [GpuInfo] {
    static FOUND: OnceLock<Vec<GpuInfo>> = OnceLock::new();
    FOUND.get_or_init(gpus)
}

/// How a choice reads in the combo.
fn choice_name(choice: DeviceChoice, gpus: &[GpuInfo]) -> String {
    match choice {
        DeviceChoice::Auto if gpus.is_empty() => "CPU".into(),
        DeviceChoice::Auto => "Auto (first GPU)".into(),
        DeviceChoice::Cpu => "CPU".into(),
        DeviceChoice::Cuda(n) => match gpus.iter().find(|g| g.ordinal == n) {
            Some(g) => format!(
                "GPU {n}: {} ({:.0} GB)",
                g.name,
                g.memory_bytes as f64 / 1e9
            ),
            None => format!("GPU {n} (not found)"),
        },
    }
}

/// Draws the device and precision rows (and, with two GPUs or more, which ones train together);
/// true when the configuration changed.
pub fn show(
    ui: &mut Ui,
    config: &mut RunConfig,
    gpus: &[GpuInfo],
    parallel: &mut Vec<usize>,
    error: Option<&String>,
) -> bool {
    let mut changed = false;
    parallel.retain(|g| gpus.iter().any(|f| f.ordinal == *g));
    let data_parallel = parallel.len() >= 2;
    ui.add_enabled_ui(!data_parallel, |ui| {
        ui.horizontal(|ui| {
            let l = ui.label("Device");
            let mut choices = Vec::new();
            if !gpus.is_empty() {
                choices.push(DeviceChoice::Auto);
            }
            choices.push(DeviceChoice::Cpu);
            choices.extend(gpus.iter().map(|g| DeviceChoice::Cuda(g.ordinal)));
            egui::ComboBox::from_id_salt("device")
                .selected_text(choice_name(config.device, gpus))
                .show_ui(ui, |ui| {
                    for c in choices {
                        let name = choice_name(c, gpus);
                        changed |= ui.selectable_value(&mut config.device, c, name).changed();
                    }
                })
                .response
                .labelled_by(l.id)
                .on_hover_text(
                    "Where the run trains and evaluates; a run can be resumed on another",
                );
        })
    });
    if gpus.len() >= 2 {
        ui.horizontal_wrapped(|ui| {
            ui.label("Data parallel on");
            for g in gpus {
                let mut on = parallel.contains(&g.ordinal);
                let r = ui
                    .checkbox(&mut on, format!("GPU {}", g.ordinal))
                    .on_hover_text(format!(
                        "{} ({:.0} GB): tick two or more to train on them together",
                        g.name,
                        g.memory_bytes as f64 / 1e9
                    ));
                if r.changed() {
                    if on {
                        parallel.push(g.ordinal);
                    } else {
                        parallel.retain(|o| *o != g.ordinal);
                    }
                }
            }
        });
        if data_parallel {
            ui.label(
                RichText::new(format!(
                    "{} GPUs, one process each: every GPU trains the same subnets on its share \
                     of each batch and their gradients are summed (NCCL). Checkpoints do not \
                     depend on the number of GPUs; Pause is not offered.",
                    parallel.len()
                ))
                .weak(),
            );
        }
    }
    if gpus.is_empty() {
        ui.label(RichText::new(format!("Only the CPU: {}", no_gpu_reason())).weak());
    }
    ui.horizontal(|ui| {
        let l = ui.label("Precision");
        egui::ComboBox::from_id_salt("precision")
            .selected_text(format!("{:?}", config.precision))
            .show_ui(ui, |ui| {
                for p in [Precision::F32, Precision::Bf16] {
                    let name = format!("{p:?}");
                    changed |= ui
                        .selectable_value(&mut config.precision, p, name)
                        .changed();
                }
            })
            .response
            .labelled_by(l.id)
            .on_hover_text(
                "Bf16 keeps the frozen teacher and the matrix products in bfloat16 (GPU only); \
                 adapters, master weights and optimizer moments stay f32",
            );
    });
    if let Some(e) = error {
        ui.label(RichText::new(e).small().color(ui.visuals().error_fg_color));
    }
    changed
}
