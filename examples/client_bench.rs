//! How fast the client alone can publish and consume, with the broker's cost out of the
//! picture: a fake broker on 127.0.0.1 does the handshake and then either reads and discards
//! everything (`publish`) or answers basic.consume and streams pre-encoded deliveries
//! (`consume`).
//!
//! ```text
//! cargo run --release --example client_bench -- publish|consume [messages] [body size]
//! ```

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warren::client::{Connection, ConsumeOptions, PublishTarget};
use warren::protocol::{
    encode_body, encode_header, encode_method, BasicConsumeOk, BasicDeliver, BasicProperties,
    BasicPublish, ChannelOpenOk, ConnectionOpenOk, ConnectionStart, ConnectionTune, ContentHeader,
    FieldTable, Frame, FrameDecoder, Method,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn send(stream: &mut TcpStream, method: Method) -> Result<(), Error> {
    let mut out = BytesMut::new();
    encode_method(0, &method, &mut out);
    stream.write_all(&out).await?;
    Ok(())
}

async fn next_method(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    decoder: &mut FrameDecoder,
) -> Result<(u16, Method), Error> {
    loop {
        if let Some(Frame::Method { channel, method }) = decoder.decode(buf)? {
            return Ok((channel, method));
        }
        if stream.read_buf(buf).await? == 0 {
            return Err("client hung up".into());
        }
    }
}

/// The fake broker's side of the handshake and channel.open; returns the channel number.
async fn accept_client(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    decoder: &mut FrameDecoder,
) -> Result<u16, Error> {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await?;
    let start = ConnectionStart {
        version_major: 0,
        version_minor: 9,
        server_properties: FieldTable::new(),
        mechanisms: Bytes::from_static(b"PLAIN"),
        locales: Bytes::from_static(b"en_US"),
    };
    send(stream, start.into()).await?;
    next_method(stream, buf, decoder).await?; // start-ok
    let tune = ConnectionTune {
        channel_max: 16,
        frame_max: 131_072,
        heartbeat: 0,
    };
    send(stream, tune.into()).await?;
    next_method(stream, buf, decoder).await?; // tune-ok
    next_method(stream, buf, decoder).await?; // open
    send(stream, ConnectionOpenOk.into()).await?;
    let (channel, _) = next_method(stream, buf, decoder).await?;
    let mut out = BytesMut::new();
    encode_method(channel, &ChannelOpenOk.into(), &mut out);
    stream.write_all(&out).await?;
    Ok(channel)
}

/// Reads until `expected` bytes have arrived after the handshake.
async fn sink(mut stream: TcpStream, expected: u64) -> Result<u64, Error> {
    let mut buf = BytesMut::new();
    let mut decoder = FrameDecoder::new(131_072);
    accept_client(&mut stream, &mut buf, &mut decoder).await?;
    let mut total = buf.len() as u64;
    let mut chunk = vec![0u8; 1 << 20];
    while total < expected {
        match stream.read(&mut chunk).await? {
            0 => return Err("client hung up early".into()),
            n => total += n as u64,
        }
    }
    Ok(total)
}

/// Octets one publish puts on the wire: method, header and body frames.
fn wire_size(target: (&str, &str), size: usize) -> u64 {
    let mut out = BytesMut::new();
    let publish = BasicPublish {
        exchange: target.0.into(),
        routing_key: target.1.into(),
        mandatory: false,
        immediate: false,
    };
    encode_method(1, &publish.into(), &mut out);
    let header = ContentHeader {
        class_id: 60,
        body_size: size as u64,
        properties: BasicProperties::default(),
    };
    encode_header(1, &header, &mut out);
    encode_body(1, &vec![0u8; size], 131_072, &mut out);
    out.len() as u64
}

/// Answers basic.consume, then writes `messages` deliveries of `size` bytes.
async fn source(mut stream: TcpStream, messages: u64, size: usize) -> Result<(), Error> {
    let mut buf = BytesMut::new();
    let mut decoder = FrameDecoder::new(131_072);
    let channel = accept_client(&mut stream, &mut buf, &mut decoder).await?;
    let tag = match next_method(&mut stream, &mut buf, &mut decoder).await? {
        (_, Method::BasicConsume(consume)) => consume.consumer_tag,
        (_, other) => return Err(format!("expected basic.consume, got {}", other.name()).into()),
    };
    let mut out = BytesMut::new();
    let ok = BasicConsumeOk {
        consumer_tag: tag.clone(),
    };
    encode_method(channel, &ok.into(), &mut out);
    stream.write_all(&out).await?;
    const CHUNK: u64 = 1000;
    let body = vec![0u8; size];
    let mut sent = 0;
    while sent < messages {
        out.clear();
        for _ in 0..CHUNK.min(messages - sent) {
            sent += 1;
            let deliver = BasicDeliver {
                consumer_tag: tag.clone(),
                delivery_tag: sent,
                redelivered: false,
                exchange: "direct".into(),
                routing_key: "perf-test".into(),
            };
            encode_method(channel, &deliver.into(), &mut out);
            let header = ContentHeader {
                class_id: 60,
                body_size: size as u64,
                properties: BasicProperties::default(),
            };
            encode_header(channel, &header, &mut out);
            encode_body(channel, &body, 131_072, &mut out);
        }
        stream.write_all(&out).await?;
    }
    // Keep the socket open until the client hangs up.
    let mut rest = [0u8; 4096];
    while stream.read(&mut rest).await? > 0 {}
    Ok(())
}

async fn publish(server: TcpListener, messages: u64, size: usize) -> Result<f64, Error> {
    let port = server.local_addr()?.port();
    let expected = messages * wire_size(("direct", "perf-test"), size);
    let server = tokio::spawn(async move {
        let (stream, _) = server.accept().await?;
        sink(stream, expected).await
    });
    let conn = Connection::connect(&format!("amqp://guest:guest@127.0.0.1:{port}/")).await?;
    let channel = conn.open_channel().await?;
    let target = PublishTarget::new("direct", "perf-test")?;
    let properties = BasicProperties::default();
    let body = vec![0u8; size];
    let started = Instant::now();
    for _ in 0..messages {
        channel.basic_publish(&target, &properties, &body).await?;
        tokio::task::consume_budget().await;
    }
    // Timed until the sink has read every byte, not until the last publish was queued.
    server.await??;
    Ok(started.elapsed().as_secs_f64())
}

async fn consume(server: TcpListener, messages: u64, size: usize) -> Result<f64, Error> {
    let port = server.local_addr()?.port();
    let server = tokio::spawn(async move {
        let (stream, _) = server.accept().await?;
        source(stream, messages, size).await
    });
    let conn = Connection::connect(&format!("amqp://guest:guest@127.0.0.1:{port}/")).await?;
    let channel = conn.open_channel().await?;
    let options = ConsumeOptions {
        no_ack: true,
        ..ConsumeOptions::default()
    };
    let mut consumer = channel.basic_consume("perf-test", options).await?;
    let started = Instant::now();
    let mut received = 0;
    let mut batch = Vec::with_capacity(256);
    while received < messages {
        match consumer.recv_many(&mut batch, 256).await {
            0 => return Err("consumer ended early".into()),
            n => received += n as u64,
        }
        batch.clear();
    }
    let secs = started.elapsed().as_secs_f64();
    drop(conn);
    server.await??;
    Ok(secs)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "publish".into());
    let messages: u64 = args.next().map_or(Ok(2_000_000), |a| a.parse())?;
    let size: usize = args.next().map_or(Ok(16), |a| a.parse())?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let secs = match mode.as_str() {
        "publish" => publish(listener, messages, size).await?,
        "consume" => consume(listener, messages, size).await?,
        other => return Err(format!("unknown mode {other:?}: publish or consume").into()),
    };
    let line = format!(
        "{mode}: {messages} messages of {size} B in {secs:.2}s: {:.0} msg/s",
        messages as f64 / secs
    );
    // An example binary: stdout is its interface.
    #[allow(clippy::print_stdout)]
    {
        println!("{line}");
    }
    Ok(())
}
