import * as assert from 'assert/strict';
import { countSteps, ProgressParser } from '../../tasks/DockerBuildxCacheV1/src/docker/progress';

// Trimmed from a real `docker buildx build --progress plain` run on the test engine.
const WARM = `#0 building with "default" instance using docker driver

#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 318B done
#1 DONE 0.0s

#2 [internal] load metadata for docker.io/local/busybox:latest
#2 DONE 0.0s

#5 [1/6] FROM docker.io/local/busybox:latest@sha256:016e5b5ba4523cbeeaeeaa13ef179a6b6abe20aea6c2194a93b338c2b1bd1ac8
#5 resolve docker.io/local/busybox:latest@sha256:016e5b 0.0s done
#5 DONE 0.0s

#7 [5/6] COPY app.sh ./
#7 CACHED

#8 [3/6] COPY deps.txt ./
#8 CACHED

#9 [2/6] WORKDIR /app
#9 CACHED

#10 [4/6] RUN echo "installing dependencies" && sleep 2
#10 0.207 installing dependencies
#10 DONE 2.1s

#11 [6/6] RUN chmod +x app.sh
#11 DONE 0.2s

#12 exporting cache to client directory
#12 preparing build cache for export
#12 ERROR: error writing layer blob: no space left on device
------
 > exporting cache to client directory:
------
ERROR: failed to solve: error writing layer blob: no space left on device`;

// From a build through the registry facade (dockerd's BuildKit): step 4 pulled from the cache, not run.
const PULLED = `#8 [2/6] WORKDIR /app
#8 CACHED

#10 [4/6] RUN echo "installing $(cat deps.lock)" && dd if=/dev/urandom of=/app/deps.bin bs=1M count=4 2>/dev/null
#10 sha256:f2ee49a1ce689f91cf67fcec0a3d56cea6f7f0932202336ca32d5bacdac05d51 4.20MB / 4.20MB 0.1s done
#10 sha256:49f5fd76adc4854e83971fd39ed8a69e3df2eacabbab5dfb28c876c702335420 92B / 92B 0.1s done
#10 extracting sha256:49f5fd76adc4854e83971fd39ed8a69e3df2eacabbab5dfb28c876c702335420 done
#10 extracting sha256:f2ee49a1ce689f91cf67fcec0a3d56cea6f7f0932202336ca32d5bacdac05d51 0.0s done
#10 DONE 0.2s

#11 [5/6] COPY src/ ./src/
#11 DONE 0.0s

#12 [6/6] RUN cat src/main.txt > /app/out.txt
#12 0.105 sha256:f2ee49a1ce689f91cf67fcec0a3d56cea6f7f0932202336ca32d5bacdac05d51 printed by the step
#12 DONE 0.2s`;

describe('reading plain progress', () => {
  it('counts a step pulled from a registry cache as cached, and a step that ran and printed a digest as not', () => {
    const count = countSteps(PULLED.split('\n'));
    assert.deepEqual(
      count.steps.map((s) => [s.name.slice(0, 10), s.cached]),
      [
        ['[2/6] WORK', true],
        ['[4/6] RUN ', true],
        ['[5/6] COPY', false],
        ['[6/6] RUN ', false],
      ],
    );
  });

  it('counts Dockerfile steps, without FROM, and the cached ones', () => {
    const count = countSteps(WARM.split('\n'));
    assert.equal(count.total, 5);
    assert.equal(count.cached, 3);
    assert.deepEqual(
      count.steps.filter((s) => !s.cached).map((s) => s.name),
      ['[4/6] RUN echo "installing dependencies" && sleep 2', '[6/6] RUN chmod +x app.sh'],
    );
  });

  it('names the vertex that failed', () => {
    const parser = new ProgressParser();
    for (const line of WARM.split('\n')) parser.push(line);
    assert.deepEqual(parser.failedVertices(), ['exporting cache to client directory']);
  });

  const cases: [string, string[], number, number][] = [
    ['stage names', ['#4 [build 2/3] RUN make', '#4 CACHED', '#5 [stage-1 2/2] COPY --from=build /out /'], 2, 1],
    ['per-platform steps', ['#4 [linux/amd64 2/2] RUN x', '#5 [linux/arm64 2/2] RUN x', '#5 CACHED'], 2, 1],
    ['CACHED before the name line repeats', ['#4 [2/2] RUN x', '#4 CACHED', '#4 [2/2] RUN x'], 1, 1],
    [
      'a vertex named again later is counted once',
      ['#4 [2/3] RUN a', '#4 0.1 out', '#5 [3/3] RUN b', '#4 [2/3] RUN a', '#4 DONE 1s'],
      2,
      0,
    ],
    ['internal vertices are not steps', ['#1 [internal] load build definition from Dockerfile', '#1 CACHED'], 0, 0],
    ['output that looks like a step is not a name line', ['#4 [2/2] RUN x', '#4 0.5 [1/2] fake'], 1, 0],
  ];
  for (const [name, lines, total, cached] of cases) {
    it(name, () => {
      const c = countSteps(lines);
      assert.deepEqual([c.total, c.cached], [total, cached]);
    });
  }
});
