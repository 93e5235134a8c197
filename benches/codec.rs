//! Codec throughput for the hot path: basic.publish + content header + body, decoded and
//! encoded, with a small and a large body.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use warren::protocol::{
    encode_body, encode_header, encode_method, BasicProperties, BasicPublish, ContentHeader,
    FieldTable, FieldValue, Frame, FrameDecoder, Method,
};

const FRAME_MAX: u32 = 131_072;

fn message(body_len: usize) -> (Method, ContentHeader, Vec<u8>) {
    let method = Method::from(BasicPublish {
        exchange: "amq.direct".into(),
        routing_key: "bench.queue".into(),
        mandatory: false,
        immediate: false,
    });
    let mut headers = FieldTable::new();
    headers.insert("x-trace", FieldValue::from("abc"));
    let header = ContentHeader {
        class_id: 60,
        body_size: body_len as u64,
        properties: BasicProperties {
            content_type: Some("application/octet-stream".into()),
            delivery_mode: Some(2),
            headers: Some(headers),
            message_id: Some("message-1".into()),
            ..BasicProperties::default()
        },
    };
    (method, header, vec![0x5a; body_len])
}

fn encode(method: &Method, header: &ContentHeader, body: &[u8], out: &mut BytesMut) {
    encode_method(1, method, out);
    encode_header(1, header, out);
    encode_body(1, body, FRAME_MAX, out);
}

fn codec(c: &mut Criterion) {
    for (label, len) in [("16B", 16usize), ("64KiB", 64 * 1024)] {
        let (method, header, body) = message(len);
        let mut wire = BytesMut::new();
        encode(&method, &header, &body, &mut wire);
        let wire: Bytes = wire.freeze();

        let mut group = c.benchmark_group(format!("publish_{label}"));
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function("encode", |b| {
            let mut out = BytesMut::with_capacity(wire.len());
            b.iter(|| {
                out.clear();
                encode(
                    black_box(&method),
                    black_box(&header),
                    black_box(&body),
                    &mut out,
                );
                black_box(out.len())
            })
        });
        // A read buffer usually holds many frames, so decoding is timed over a run of messages
        // (about 64 KiB of them) as a connection would see them.
        let messages = (64 * 1024 / wire.len()).max(1);
        let run: Bytes = wire.repeat(messages).into();
        group.throughput(Throughput::Bytes(run.len() as u64));
        group.bench_function(format!("decode_x{messages}"), |b| {
            let mut decoder = FrameDecoder::new(FRAME_MAX);
            b.iter_batched(
                // The copy into a read buffer stands for the socket read and is not timed.
                || BytesMut::from(&run[..]),
                |mut buf| {
                    let mut frames = 0;
                    while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                        if let Frame::Body { payload, .. } = &frame {
                            black_box(payload.len());
                        }
                        frames += 1;
                    }
                    assert_eq!(frames, 3 * messages);
                    frames
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
