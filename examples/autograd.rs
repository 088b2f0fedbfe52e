//! The worked example: f = (x + y) * z, and its gradients, on the chosen adapter.
//! `cargo run --release --example autograd`

use webgrad::{Device, Tensor};

fn main() -> webgrad::Result<()> {
    let dev = Device::new()?;
    println!("adapter: {}", dev.info());
    let x = Tensor::from_vec(&dev, vec![-2.0], &[1])?.requires_grad();
    let y = Tensor::from_vec(&dev, vec![5.0], &[1])?.requires_grad();
    let z = Tensor::from_vec(&dev, vec![-4.0], &[1])?.requires_grad();
    let f = x.add(&y)?.mul(&z)?;
    f.backward()?;
    println!("f = (x + y) * z = {}", f.item()?);
    for (name, t) in [("x", &x), ("y", &y), ("z", &z)] {
        println!(
            "df/d{name} = {}",
            t.grad().expect("leaf has a gradient").item()?
        );
    }
    Ok(())
}
