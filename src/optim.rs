//! Optimizers whose updates are WGSL kernels that change the parameters in place
//! (`shaders/optim.wgsl`), and learning-rate schedules.

use crate::error::{Error, Result};
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::tensor::Tensor;

pub(crate) static SHADER: Shader = shader!("optim");

/// What every optimizer offers.
pub trait Optimizer {
    /// Updates every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;
    /// The parameters this optimizer updates.
    fn parameters(&self) -> &[Tensor];
    /// Forgets the parameters' gradients.
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }
    /// The learning rate used by the next step.
    fn learning_rate(&self) -> f32;
    /// Changes the learning rate (schedules call it between epochs).
    fn set_learning_rate(&mut self, lr: f32);
    /// The optimizer's state tensors, named `PARAM_INDEX.NAME` (for checkpoints).
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Steps taken so far.
    fn steps(&self) -> u64;
    /// Restores state saved by [`state`](Self::state) and the step count.
    fn load_state(&mut self, state: &[(String, Tensor)], steps: u64) -> Result<()>;
}

kernel_params! {
    /// `Params` of `shaders/optim.wgsl`, shared by SGD and Adam.
    pub(crate) struct OptimParams for "optim" {
        len: u32,
        lr: f32,
        momentum: f32,
        dampening: f32,
        weight_decay: f32,
        nesterov: u32,
        first_step: u32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        bias_correction1: f32,
        bias_correction2: f32,
        decoupled: u32,
        start: u32,
    }
}

/// The kernels' parameters but `len` and `start` (set per dispatch).
#[allow(clippy::too_many_arguments)]
fn update_params(
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
    nesterov: bool,
    first_step: bool,
    betas: (f32, f32),
    eps: f32,
    bc: (f32, f32),
    decoupled: bool,
) -> OptimParams {
    OptimParams {
        len: 0,
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov: nesterov as u32,
        first_step: first_step as u32,
        beta1: betas.0,
        beta2: betas.1,
        eps,
        bias_correction1: bc.0,
        bias_correction2: bc.1,
        decoupled: decoupled as u32,
        start: 0,
    }
}

/// One parameter's update: its element count and buffers (gradient, parameter, then the
/// optimizer's state buffers).
struct Update<'a> {
    n: usize,
    buffers: Vec<&'a wgpu::Buffer>,
}

/// Records the updates of the parameters that have a gradient, with an optimizer's (scalar,
/// vec4) kernels; `states[k][i]` is the k-th state tensor of parameter i, `kernel_params` the
/// kernels' parameters but `len` and `start`.
fn record_updates(
    params: &[Tensor],
    states: &[&[Tensor]],
    entries: (&'static str, &'static str),
    kernel_params: &OptimParams,
) -> Result<()> {
    let Some(dev) = params.first().map(|p| p.device()) else {
        return Ok(());
    };
    let grads: Vec<Option<Tensor>> = params.iter().map(|p| p.grad()).collect();
    // Checked again at each step: a gradient set by hand may come from another device.
    one_device(params, "optimizer step")?;
    for g in grads.iter().flatten() {
        dev.same(g.device(), "optimizer step")?;
    }
    // Updated in place.
    for t in params.iter().chain(states.iter().flat_map(|s| s.iter())) {
        t.storage().mark_written();
    }
    let updates: Vec<Update> = params
        .iter()
        .zip(&grads)
        .enumerate()
        .filter_map(|(i, (p, g))| {
            let mut buffers = vec![g.as_ref()?.buffer(), p.buffer()];
            buffers.extend(states.iter().map(|s| s[i].buffer()));
            Some(Update {
                n: p.numel(),
                buffers,
            })
        })
        .collect();
    record_dispatches(dev, entries, kernel_params, &updates)
}

/// record_updates' dispatches: the small parameters (below the policy's
/// `optimizer_flat_below` elements), when there are several, copied side by side into one
/// buffer per operand (gradient, parameter, each state), updated by one dispatch and copied
/// back; every other one alone (its vec4 kernel and scalar tail).
fn record_dispatches<'a>(
    dev: &crate::Device,
    entries: (&'static str, &'static str),
    params: &OptimParams,
    updates: &[Update<'a>],
) -> Result<()> {
    let per = updates.first().map_or(0, |u| u.buffers.len());
    let flat_below = dev.policy().optimizer_flat_below();
    let (flat, alone): (Vec<&Update>, Vec<&Update>) =
        updates.iter().partition(|u| u.n < flat_below);
    let alone: Vec<&Update> = if flat.len() >= 2 {
        record_flat(dev, entries, params, &flat, per)?;
        alone
    } else {
        alone.into_iter().chain(flat).collect()
    };
    for u in alone {
        update_kernels(dev, entries, params, &u.buffers, u.n)?;
    }
    Ok(())
}

/// An optimizer's vec4 kernel (and scalar tail) over n elements of its operand buffers:
/// the gradient (read), the parameter and the states (updated).
fn update_kernels(
    dev: &crate::Device,
    entries: (&'static str, &'static str),
    params: &OptimParams,
    buffers: &[&wgpu::Buffer],
    n: usize,
) -> Result<()> {
    let mut binds: Vec<Bind> = buffers.iter().map(|&b| Bind::Write(b)).collect();
    binds[0] = Bind::Read(buffers[0]);
    dev.dispatch_vec4(&SHADER, entries, &[], &binds, n, |start| OptimParams {
        len: n as u32,
        start: start as u32,
        ..*params
    })
}

/// The updates of several small parameters as one dispatch over flat copies of their operands
/// (each parameter at a multiple of 4 elements, so the vec4 kernel covers all of them; the
/// padding between them is updated too, and never copied back).
fn record_flat(
    dev: &crate::Device,
    entries: (&'static str, &'static str),
    params: &OptimParams,
    updates: &[&Update],
    per: usize,
) -> Result<()> {
    let mut offsets = Vec::with_capacity(updates.len());
    let mut total = 0;
    for u in updates {
        offsets.push(total);
        total += u.n.next_multiple_of(4);
    }
    let flats = (0..per)
        .map(|_| Tensor::uninit(dev, &[total]))
        .collect::<Result<Vec<_>>>()?;
    for (u, &at) in updates.iter().zip(&offsets) {
        for (src, flat) in u.buffers.iter().zip(&flats) {
            dev.copy_range(src, 0, flat.buffer(), at as u64 * 4, u.n as u64 * 4);
        }
    }
    let buffers: Vec<&wgpu::Buffer> = flats.iter().map(|f| f.buffer()).collect();
    update_kernels(dev, entries, params, &buffers, total)?;
    for (u, &at) in updates.iter().zip(&offsets) {
        for (dst, flat) in u.buffers.iter().zip(&flats).skip(1) {
            dev.copy_range(flat.buffer(), at as u64 * 4, dst, 0, u.n as u64 * 4);
        }
    }
    Ok(())
}

/// An optimizer's parameters must share one device: its update kernels run on one.
fn one_device(params: &[Tensor], op: &'static str) -> Result<()> {
    match params.first() {
        Some(first) => params
            .iter()
            .try_for_each(|p| first.device().same(p.device(), op)),
        None => Ok(()),
    }
}

fn zeros_like(params: &[Tensor]) -> Result<Vec<Tensor>> {
    params
        .iter()
        .map(|p| Tensor::zeros(p.device(), p.shape()))
        .collect()
}

fn load_named(dst: &[Tensor], name: &str, state: &[(String, Tensor)]) -> Result<()> {
    for (i, t) in dst.iter().enumerate() {
        let key = format!("{i}.{name}");
        let src = state
            .iter()
            .find(|(k, _)| *k == key)
            .ok_or_else(|| Error::Invalid(format!("optimizer state has no {key}")))?;
        if src.1.shape() != t.shape() {
            return Err(Error::Invalid(format!(
                "optimizer state {key} has shape {:?}, the parameter {:?}",
                src.1.shape(),
                t.shape()
            )));
        }
        t.copy_from(&src.1)?;
    }
    Ok(())
}

/// Stochastic gradient descent with momentum, dampening, Nesterov and weight decay,
/// as `torch.optim.SGD`.
pub struct Sgd {
    params: Vec<Tensor>,
    momentum_buffers: Vec<Tensor>,
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0: plain gradient descent).
    pub momentum: f32,
    /// Dampening of the momentum's gradient term.
    pub dampening: f32,
    /// L2 penalty added to the gradient (PyTorch's `weight_decay`).
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    steps: u64,
}

impl Sgd {
    /// Plain SGD with learning rate `lr`; set momentum etc. with the `with_` methods.
    pub fn new(params: Vec<Tensor>, lr: f32) -> Result<Sgd> {
        one_device(&params, "Sgd::new")?;
        Ok(Sgd {
            momentum_buffers: zeros_like(&params)?,
            params,
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            steps: 0,
        })
    }
    /// Momentum factor `m`.
    pub fn with_momentum(mut self, m: f32) -> Self {
        self.momentum = m;
        self
    }
    /// Nesterov momentum on or off (needs momentum and no dampening).
    pub fn with_nesterov(mut self, on: bool) -> Self {
        self.nesterov = on;
        self
    }
    /// L2 penalty `wd` added to the gradient.
    pub fn with_weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self
    }
    /// Dampening `d` of the momentum's gradient term.
    pub fn with_dampening(mut self, d: f32) -> Self {
        self.dampening = d;
        self
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::Invalid(
                "SGD: Nesterov momentum requires a momentum and zero dampening".into(),
            ));
        }
        let params = update_params(
            self.lr,
            self.momentum,
            self.dampening,
            self.weight_decay,
            self.nesterov,
            self.steps == 0,
            (0.0, 0.0),
            0.0,
            (1.0, 1.0),
            false,
        );
        record_updates(
            &self.params,
            &[&self.momentum_buffers],
            ("sgd_step", "sgd_step4"),
            &params,
        )?;
        self.steps += 1;
        Ok(())
    }
    fn parameters(&self) -> &[Tensor] {
        &self.params
    }
    fn learning_rate(&self) -> f32 {
        self.lr
    }
    fn set_learning_rate(&mut self, lr: f32) {
        self.lr = lr;
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        self.momentum_buffers
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("{i}.momentum_buffer"), t.clone()))
            .collect()
    }
    fn steps(&self) -> u64 {
        self.steps
    }
    fn load_state(&mut self, state: &[(String, Tensor)], steps: u64) -> Result<()> {
        load_named(&self.momentum_buffers, "momentum_buffer", state)?;
        self.steps = steps;
        Ok(())
    }
}

/// Adam (and AdamW with decoupled weight decay), as `torch.optim.Adam` / `AdamW`.
pub struct Adam {
    params: Vec<Tensor>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    /// Learning rate.
    pub lr: f32,
    /// Decay rates of the first and second moment estimates.
    pub betas: (f32, f32),
    /// Added to the denominator for numerical stability.
    pub eps: f32,
    /// Weight decay: L2 in the gradient (Adam) or decoupled (AdamW).
    pub weight_decay: f32,
    /// AdamW: decay the weights directly instead of adding to the gradient.
    pub decoupled: bool,
    steps: u64,
}

impl Adam {
    /// Adam with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn new(params: Vec<Tensor>, lr: f32) -> Result<Adam> {
        one_device(&params, "Adam::new")?;
        Ok(Adam {
            exp_avg: zeros_like(&params)?,
            exp_avg_sq: zeros_like(&params)?,
            params,
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            steps: 0,
        })
    }
    /// AdamW with PyTorch's defaults (weight decay 0.01).
    pub fn adamw(params: Vec<Tensor>, lr: f32) -> Result<Adam> {
        let mut a = Adam::new(params, lr)?;
        a.decoupled = true;
        a.weight_decay = 0.01;
        Ok(a)
    }
    /// The moment decay rates (default 0.9, 0.999).
    pub fn with_betas(mut self, b1: f32, b2: f32) -> Self {
        self.betas = (b1, b2);
        self
    }
    /// The stability term (default 1e-8).
    pub fn with_eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }
    /// Weight decay `wd`.
    pub fn with_weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        let t = (self.steps + 1) as i32;
        let bc = (1.0 - self.betas.0.powi(t), 1.0 - self.betas.1.powi(t));
        let params = update_params(
            self.lr,
            0.0,
            0.0,
            self.weight_decay,
            false,
            false,
            self.betas,
            self.eps,
            bc,
            self.decoupled,
        );
        record_updates(
            &self.params,
            &[&self.exp_avg, &self.exp_avg_sq],
            ("adam_step", "adam_step4"),
            &params,
        )?;
        self.steps += 1;
        Ok(())
    }
    fn parameters(&self) -> &[Tensor] {
        &self.params
    }
    fn learning_rate(&self) -> f32 {
        self.lr
    }
    fn set_learning_rate(&mut self, lr: f32) {
        self.lr = lr;
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (i, (m, s)) in self.exp_avg.iter().zip(&self.exp_avg_sq).enumerate() {
            v.push((format!("{i}.exp_avg"), m.clone()));
            v.push((format!("{i}.exp_avg_sq"), s.clone()));
        }
        v
    }
    fn steps(&self) -> u64 {
        self.steps
    }
    fn load_state(&mut self, state: &[(String, Tensor)], steps: u64) -> Result<()> {
        load_named(&self.exp_avg, "exp_avg", state)?;
        load_named(&self.exp_avg_sq, "exp_avg_sq", state)?;
        self.steps = steps;
        Ok(())
    }
}

/// A learning rate as a function of the epoch (or step) index.
pub trait LrSchedule {
    /// The learning rate for epoch `epoch` (counted from 0).
    fn lr_at(&self, epoch: usize) -> f32;
}

/// Multiplies the base rate by `gamma` every `step_size` epochs (`torch.optim.lr_scheduler.StepLR`).
#[derive(Clone, Copy, Debug)]
pub struct StepLr {
    /// The learning rate of the first epochs.
    pub base_lr: f32,
    /// Epochs between decays.
    pub step_size: usize,
    /// Factor applied at each decay.
    pub gamma: f32,
}

impl LrSchedule for StepLr {
    fn lr_at(&self, epoch: usize) -> f32 {
        self.base_lr * self.gamma.powi((epoch / self.step_size.max(1)) as i32)
    }
}

/// Cosine annealing from `base_lr` to `eta_min` over `t_max` epochs
/// (`torch.optim.lr_scheduler.CosineAnnealingLR`, closed form).
#[derive(Clone, Copy, Debug)]
pub struct CosineLr {
    /// The learning rate at epoch 0.
    pub base_lr: f32,
    /// Epochs of the half cosine period.
    pub t_max: usize,
    /// The learning rate at the end of the period.
    pub eta_min: f32,
}

impl LrSchedule for CosineLr {
    fn lr_at(&self, epoch: usize) -> f32 {
        let t = epoch.min(self.t_max) as f32 / self.t_max.max(1) as f32;
        self.eta_min
            + (self.base_lr - self.eta_min) * 0.5 * (1.0 + (std::f32::consts::PI * t).cos())
    }
}
