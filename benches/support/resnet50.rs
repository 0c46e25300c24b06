//! torchvision's ResNet-50 as `.nnir` text, built layer by layer (shared by the benches).
use std::fmt::Write;

/// torchvision's resnet50 as `.nnir` text (batch norm unfused, random weights at run time).
pub fn resnet50() -> String {
    let mut params = String::new();
    let mut body = String::new();
    let mut conv = |body: &mut String,
                    out: &str,
                    input: &str,
                    name: &str,
                    shape: [usize; 4],
                    stride: usize,
                    pad: usize| {
        let [o, i, k, _] = shape;
        let _ = writeln!(params, "  param @{name}.weight: f32[{o}, {i}, {k}, {k}]");
        let _ = writeln!(
            body,
            "  %{out} = conv2d(%{input}, @{name}.weight, stride={stride}, padding={pad})"
        );
    };
    let bn = |params: &mut String,
              body: &mut String,
              out: &str,
              input: &str,
              name: &str,
              c: usize| {
        for p in ["weight", "bias", "running_mean", "running_var"] {
            let _ = writeln!(params, "  param @{name}.{p}: f32[{c}]");
        }
        let _ = writeln!(
            body,
            "  %{out} = batch_norm(%{input}, @{name}.weight, @{name}.bias, @{name}.running_mean, @{name}.running_var)"
        );
    };
    conv(&mut body, "conv1", "x", "conv1", [64, 3, 7, 7], 2, 3);
    let mut p2 = String::new();
    bn(&mut p2, &mut body, "bn1", "conv1", "bn1", 64);
    let _ = writeln!(
        body,
        "  %relu = relu(%bn1)\n  %pool = max_pool2d(%relu, kernel=3, stride=2, padding=1)"
    );
    let mut x = "pool".to_string();
    let mut cin = 64;
    for (layer, (blocks, width)) in [(3, 64), (4, 128), (6, 256), (3, 512)]
        .into_iter()
        .enumerate()
    {
        for b in 0..blocks {
            let n = format!("layer{}.{b}", layer + 1);
            let stride = if b == 0 && layer > 0 { 2 } else { 1 };
            let cout = width * 4;
            conv(
                &mut body,
                &format!("{n}.c1"),
                &x,
                &format!("{n}.conv1"),
                [width, cin, 1, 1],
                1,
                0,
            );
            bn(
                &mut p2,
                &mut body,
                &format!("{n}.b1"),
                &format!("{n}.c1"),
                &format!("{n}.bn1"),
                width,
            );
            let _ = writeln!(body, "  %{n}.r1 = relu(%{n}.b1)");
            conv(
                &mut body,
                &format!("{n}.c2"),
                &format!("{n}.r1"),
                &format!("{n}.conv2"),
                [width, width, 3, 3],
                stride,
                1,
            );
            bn(
                &mut p2,
                &mut body,
                &format!("{n}.b2"),
                &format!("{n}.c2"),
                &format!("{n}.bn2"),
                width,
            );
            let _ = writeln!(body, "  %{n}.r2 = relu(%{n}.b2)");
            conv(
                &mut body,
                &format!("{n}.c3"),
                &format!("{n}.r2"),
                &format!("{n}.conv3"),
                [cout, width, 1, 1],
                1,
                0,
            );
            bn(
                &mut p2,
                &mut body,
                &format!("{n}.b3"),
                &format!("{n}.c3"),
                &format!("{n}.bn3"),
                cout,
            );
            let identity = if b == 0 {
                conv(
                    &mut body,
                    &format!("{n}.dc"),
                    &x,
                    &format!("{n}.downsample.0"),
                    [cout, cin, 1, 1],
                    stride,
                    0,
                );
                bn(
                    &mut p2,
                    &mut body,
                    &format!("{n}.db"),
                    &format!("{n}.dc"),
                    &format!("{n}.downsample.1"),
                    cout,
                );
                format!("{n}.db")
            } else {
                x.clone()
            };
            let _ = writeln!(
                body,
                "  %{n}.sum = add(%{n}.b3, %{identity})\n  %{n}.out = relu(%{n}.sum)"
            );
            x = format!("{n}.out");
            cin = cout;
        }
    }
    let _ = writeln!(
        params,
        "  param @fc.weight: f32[1000, 2048]\n  param @fc.bias: f32[1000]"
    );
    let _ = writeln!(body, "  %gap = global_avg_pool(%{x})\n  %flat = flatten(%gap)\n  %logits = linear(%flat, @fc.weight, @fc.bias)");
    format!("model resnet50(%x: f32[1, 3, 224, 224]) -> (%logits) {{\n{params}{p2}{body}}}\n")
}
