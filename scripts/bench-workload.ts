// The benchmark workload of npm run bench, shared with npm run bench:phases.

/**
 * A dependency step that is CPU-bound (a checksum loop) and leaves a layer of about 126 MB, then an
 * application step with a small one. `base` is the FROM image.
 */
export function benchDockerfile(base: string): string {
  return `FROM ${base}
WORKDIR /app
COPY deps.lock ./
RUN echo "resolving $(cat deps.lock)" && dd if=/dev/urandom of=/app/deps.bin bs=1M count=120 2>/dev/null && for i in 1 2 3 4 5 6 7 8; do sha256sum /app/deps.bin >/dev/null; done
COPY src/ ./src/
RUN cat src/*.txt > /app/app.txt && dd if=/dev/urandom of=/app/app.bin bs=1k count=512 2>/dev/null
`;
}
