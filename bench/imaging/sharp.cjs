// sharp's side of bench/imaging: `.resize(w, h)` (cover, centre, lanczos3)
// to WebP q85, one image at a time (no concurrency, like one component
// instance), for about `seconds`. Prints one JSON line.
const fs = require("fs");
const sharp = require(process.env.SHARP_MODULE || "sharp");
const [input, output, seconds] = process.argv.slice(2);
sharp.concurrency(1); // libvips threads per image: one core, as a component
const data = fs.readFileSync(input);
const once = () => sharp(data).resize(256, 256).webp({ quality: 85 }).toBuffer();
(async () => {
  for (let i = 0; i < 5; i++) await once(); // warm-up
  const deadline = Date.now() + Number(seconds) * 1000;
  let n = 0;
  let out;
  const start = process.hrtime.bigint();
  while (Date.now() < deadline) {
    out = await once();
    n++;
  }
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  fs.writeFileSync(output, out);
  console.log(JSON.stringify({ images: n, seconds: elapsed, perSecond: n / elapsed, bytes: out.length, sharp: sharp.versions.sharp, libvips: sharp.versions.vips }));
})();
