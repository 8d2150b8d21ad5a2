//! A worker that does real work, and the host that calls it: the worker reads the payload as
//! little-endian `f32`s in place, squares them into its reply buffer (a shared-memory segment
//! of its own when the reply is large) and names their sum in the reply's metadata.
//!
//! Run with `cargo run --example worker`. The worker is this same program started with
//! `worker` and the spawn contract's arguments.

use std::error::Error;

use perfopt::transport::grpc::ServiceConfig;
use perfopt::transport::{CallOptions, WorkerCommand};
use perfopt::worker::{Call, HandlerError, Output};
use perfopt::{DataType, Optimizer, TransferRequest};

/// The worker's code: squares every value and sums them.
fn square(call: &Call<'_>) -> Result<Option<Output>, HandlerError> {
    let payload = call.payload();
    if payload.len() % 4 != 0 {
        return Err(HandlerError::new(
            "ValueError",
            format!("{} bytes are no whole number of f32s", payload.len()),
        ));
    }
    let mut out = call.reply_buffer(payload.len());
    let mut sum = 0.0f64;
    for (value, square) in payload.chunks_exact(4).zip(out.chunks_exact_mut(4)) {
        let x = f32::from_le_bytes(value.try_into().expect("four bytes"));
        sum += f64::from(x);
        square.copy_from_slice(&(x * x).to_le_bytes());
    }
    let n = (payload.len() / 4) as u64;
    Ok(Some(
        Output::buffer(out)
            .with_array("<f4", &[n])
            .with_meta("sum", sum.to_string()),
    ))
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args_os().skip(1);
    let runtime = tokio::runtime::Runtime::new()?;
    if args.next().is_some_and(|a| a == "worker") {
        let serving = perfopt::worker::serve(
            args,
            ServiceConfig::default(),
            square,
            std::future::pending(),
        );
        return Ok(runtime.block_on(serving)?);
    }
    let optimizer = Optimizer::builder().build()?;
    runtime.block_on(async {
        let worker = WorkerCommand::new(std::env::current_exe()?).arg("worker");
        let host = optimizer.host().spawn(worker, 1).start().await?;
        for n in [16usize, 4 << 20] {
            let values: Vec<f32> = (0..n).map(|i| (i % 100) as f32 / 10.0).collect();
            let payload: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let request = TransferRequest::new(0).with_data_type(DataType::Tensor);
            let options = CallOptions {
                dtype: Some("<f4".into()),
                shape: Some(vec![n as u64]),
                ..CallOptions::default()
            };
            let reply = host.call_with(&request, &payload, &options).await?;
            let squares = reply.bytes().chunks_exact(4).map(|b| {
                f32::from_le_bytes(b.try_into().expect("four bytes"))
            });
            let right = squares.zip(&values).all(|(s, v)| s == v * v);
            println!(
                "{n} values went by {}, came back by {:?} ({} bytes, {:?} {:?}): sum {}, squares {}",
                reply.outcome().metrics.method,
                reply.metrics().method,
                reply.len(),
                reply.dtype().unwrap_or("?"),
                reply.shape().unwrap_or_default(),
                reply.metadata().get("sum").map_or("?", String::as_str),
                if right { "right" } else { "WRONG" },
            );
        }
        // Three bytes are no f32s: the handler's error comes back typed, and is not retried.
        let err = host
            .call(&TransferRequest::new(0), &[1, 2, 3])
            .await
            .unwrap_err();
        println!("a bad payload: {err}");
        host.shutdown().await;
        Ok::<(), Box<dyn Error>>(())
    })?;
    optimizer.shutdown();
    Ok(())
}
