// The same modern LeNet-5 in TensorFlow.js, the anchor of the page benchmark (bench.html):
// conv 1->6 k5 pad 2, ReLU, max-pool 2; conv 6->16 k5, ReLU, max-pool 2; 400 -> 120 -> 84 -> 10;
// softmax cross-entropy, Adam 1e-3. A training step is forward, loss, backward, Adam and the
// loss read back, as webgrad's.
/* global tf */
window.tfjsBench = async (backend, batch, steps, inferBatch) => {
  await tf.setBackend(backend);
  await tf.ready();
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 6, kernelSize: 5, padding: "same",
        activation: "relu" }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.conv2d({ filters: 16, kernelSize: 5, activation: "relu" }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 120, activation: "relu" }),
      tf.layers.dense({ units: 84, activation: "relu" }),
      tf.layers.dense({ units: 10 }),
    ],
  });
  const opt = tf.train.adam(1e-3);
  const x = tf.randomUniform([batch, 28, 28, 1]);
  const y = tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 10), "int32"), 10);
  const train = [];
  const result = { backend };
  if (steps > 0) {
    for (let s = 0; s <= steps; s++) {
      const t0 = performance.now();
      const loss = opt.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x)), true);
      await loss.data();
      loss.dispose();
      train.push(performance.now() - t0);
    }
    result.first_ms = train.shift();
    result.train_ms = train;
  }
  if (inferBatch > 0) {
    const xi = tf.randomUniform([inferBatch, 28, 28, 1]);
    const infer = [];
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      const classes = tf.tidy(() => model.predict(xi).argMax(1));
      await classes.data();
      classes.dispose();
      infer.push(performance.now() - t0);
    }
    result.first_infer_ms = infer.shift();
    result.infer_ms = infer;
    xi.dispose();
  }
  x.dispose();
  y.dispose();
  model.dispose();
  return result;
};
