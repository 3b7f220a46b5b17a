import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { copy } from '../../src/commands/copy.js';
import { HOLDER } from '../../src/fs/owned-names.js';
import { OciLayout, removeUnusedLayout } from '../../src/layout/store.js';
import { Annotation, MediaType } from '../../src/oci/mediatypes.js';
import { sha256 } from '../../src/oci/digest.js';
import type { Descriptor } from '../../src/oci/schemas.js';
import { exitedHolder, leftByExited } from '../helpers/owned.js';
import { CKPT, ckpt, fixture, tempDir } from '../helpers/tree.js';

const STORE = new URL('../../dist/layout/store.js', import.meta.url).href;

const MANIFEST = JSON.stringify({ schemaVersion: 2, mediaType: MediaType.imageManifest, config: {}, layers: [] });

/** A layout holding one small manifest blob to tag. */
async function layoutWithBlob(): Promise<{ dir: string; layout: OciLayout; desc: Descriptor }> {
  const dir = join(await tempDir('ckpt-tags-'), 'layout');
  const layout = await OciLayout.open(dir, { create: true });
  const desc = await layout.ingest(MediaType.imageManifest, Readable.from([Buffer.from(MANIFEST)]));
  return { dir, layout, desc };
}

/** Another process opening the layout (creating it if missing) and tagging `desc` with each of `tags`, in turn. */
function tagInProcess(dir: string, desc: Descriptor, tags: string[]) {
  const script = `
    const { OciLayout } = await import(${JSON.stringify(STORE)});
    const layout = await OciLayout.open(${JSON.stringify(dir)}, { create: true });
    const desc = ${JSON.stringify(desc)};
    if (!(await layout.exists(desc))) await layout.push(desc, (await import('node:stream')).Readable.from([${JSON.stringify(MANIFEST)}]));
    for (const tag of ${JSON.stringify(tags)}) await layout.tag(desc, tag);`;
  return execa('node', ['--input-type=module', '-e', script]);
}

describe('tags in one layout', () => {
  it('a copy refuses a manifest it does not read into (an OCI 1.1-rc artifact manifest), whose blobs it would leave behind', async () => {
    const work = await tempDir('ckpt-tags-');
    const source = await OciLayout.open(join(work, 'src'), { create: true });
    const payload = Buffer.from('payload');
    const payloadDesc = await source.ingest('text/plain', Readable.from([payload]));
    const artifact = Buffer.from(JSON.stringify({ mediaType: 'application/vnd.oci.artifact.manifest.v1+json', artifactType: 'x/y', blobs: [payloadDesc] }));
    const desc = await source.ingest('application/vnd.oci.artifact.manifest.v1+json', Readable.from([artifact]));
    await source.tag(desc, 'v1');
    const run = await ckpt(['copy', `oci:${join(work, 'src')}:v1`, `oci:${join(work, 'dst')}:v2`]);
    expect(run.exitCode).toBe(3);
    expect(run.stderr).toBe(`ckpt: oci:${join(work, 'src')}: ${desc.digest} is of type application/vnd.oci.artifact.manifest.v1+json: ckpt copies OCI and Docker v2 manifests and indexes only`);
    expect(existsSync(join(work, 'dst'))).toBe(false);
  });

  it('a copy refuses a destination with both a tag and a digest, as skopeo does, instead of dropping the tag', async () => {
    // Refused before anything is opened: no registry listens on port 1.
    const run = await ckpt(['copy', `oci:${fixture('podman-image-layout')}:counter-ckpt`, `localhost:1/prod/counter:keep@sha256:${'a'.repeat(64)}`]);
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toContain('a destination takes a tag or a digest, not both');
  });

  it('a layout named without a tag gives its only image, as containers/image reads one skopeo wrote untagged', async () => {
    const work = await tempDir('ckpt-tags-');
    const untagged = join(work, 'untagged');
    const made = await execa('skopeo', ['copy', `oci:${fixture('podman-image-layout')}:counter-ckpt`, `oci:${untagged}`], { reject: false });
    expect(made.exitCode, made.stderr).toBe(0);
    const index = JSON.parse(await readFile(join(untagged, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0]?.annotations?.[Annotation.refName]).toBeUndefined();
    const inspected = await ckpt(['inspect', `oci:${untagged}`, '--json']);
    expect(inspected.exitCode, inspected.stderr).toBe(0);
    const copied = await ckpt(['copy', `oci:${untagged}`, `oci:${join(work, 'copied')}:v1`, '-q']);
    expect(copied.exitCode, copied.stderr).toBe(0);
    expect(copied.stdout.trim()).toBe(index.manifests[0]?.digest);
    // With two images, and neither tagged latest, the name must say which.
    const again = await ckpt(['build', fixture('crio-counter.tar'), `oci:${untagged}:other`]);
    expect(again.exitCode, again.stderr).toBe(0);
    const two = await ckpt(['inspect', `oci:${untagged}`]);
    expect(two.exitCode).toBe(4);
    expect(two.stderr).toContain('no image tagged "latest"');
  });

  it('given the manifest bytes, store the manifest with the tag; wrong bytes store neither', async () => {
    const dir = join(await tempDir('ckpt-tags-'), 'layout');
    const layout = await OciLayout.open(dir, { create: true });
    const bytes = Buffer.from(MANIFEST);
    const desc = { mediaType: MediaType.imageManifest, digest: sha256(bytes), size: bytes.length };
    const altered = Buffer.from(MANIFEST.replace('"schemaVersion":2', '"schemaVersion":3'));
    await expect(layout.tag(desc, 'bad', { bytes: altered })).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(await layout.exists(desc)).toBe(false);
    await layout.tag(desc, 'v1', { bytes });
    // Resolved, the descriptor is the one given: no tag annotation, and no `annotations` key left empty.
    expect(await layout.resolve('v1')).toStrictEqual(desc);
    expect((await layout.readIndex()).manifests.map((m) => m.annotations?.[Annotation.refName])).toEqual(['v1']);
  });

  it('written by several processes at once are all kept', async () => {
    const { dir, layout, desc } = await layoutWithBlob();
    const perProcess = (p: number) => Array.from({ length: 15 }, (_, k) => `p${p}-${k}`);
    await Promise.all([0, 1, 2, 3, 4, 5].map((p) => tagInProcess(dir, desc, perProcess(p))));
    const expected = [0, 1, 2, 3, 4, 5].flatMap(perProcess);
    expect((await layout.tags()).sort()).toEqual(expected.sort());
  });

  it('made by several processes at once: each finds a whole layout, and every tag is kept', async () => {
    const { desc } = await layoutWithBlob();
    const dir = join(await tempDir('ckpt-tags-'), 'new', 'layout');
    await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((p) => tagInProcess(dir, desc, [`p${p}`])));
    expect((await (await OciLayout.open(dir)).tags()).sort()).toEqual(['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7']);
  });

  it('made in an existing empty directory by several processes at once: each fills it, none refuses it', async () => {
    const { desc } = await layoutWithBlob();
    for (let round = 0; round < 3; round++) {
      const dir = join(await tempDir('ckpt-tags-'), 'mount-point');
      await mkdir(dir);
      await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((p) => tagInProcess(dir, desc, [`p${p}`])));
      expect((await (await OciLayout.open(dir)).tags()).sort()).toEqual(['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7']);
    }
  });

  it('a kill as a layout is made in an existing empty directory leaves no empty index.json', async () => {
    const dir = join(await tempDir('ckpt-tags-'), 'mount-point');
    await mkdir(dir);
    // SIGKILL at the first write to index.json itself, as a kill -9 at that moment would.
    const strace = ['-f', '-o', '/dev/null', '-P', join(dir, 'index.json'), '-e', 'inject=write:signal=SIGKILL'];
    await execa('strace', [...strace, 'node', CKPT, 'build', fixture('crio-counter.tar'), `oci:${dir}:a`, '--no-host-info'], { reject: false });
    const again = await ckpt(['build', fixture('crio-counter.tar'), `oci:${dir}:b`, '--no-host-info']);
    expect(again.exitCode, again.stderr).toBe(0);
    await execa('skopeo', ['inspect', `oci:${dir}:b`]);
  });

  it('a kill as the lock of index.json is taken leaves no empty lock for others to wait on', async () => {
    const dir = join(await tempDir('ckpt-tags-'), 'layout');
    expect((await ckpt(['build', fixture('crio-counter.tar'), `oci:${dir}:a`, '--no-host-info'])).exitCode).toBe(0);
    const strace = ['-f', '-o', '/dev/null', '-P', join(dir, 'index.json.lock'), '-e', 'inject=write:signal=SIGKILL'];
    await execa('strace', [...strace, 'node', CKPT, 'copy', `oci:${dir}:a`, `oci:${dir}:b`], { reject: false });
    // An empty lock would count as being written, and stall every writer for 30 s.
    const lock = join(dir, 'index.json.lock');
    expect(existsSync(lock) && (await readFile(lock)).length === 0).toBe(false);
    expect((await ckpt(['copy', `oci:${dir}:a`, `oci:${dir}:c`])).exitCode).toBe(0);
  }, 60_000);

  it('a copy to oci:DIR@DIGEST lists the image untagged, once, and umoci gc keeps it', async () => {
    const work = await tempDir('ckpt-tags-');
    const built = await ckpt(['build', fixture('crio-counter.tar'), `oci:${join(work, 'src')}:v1`, '-q', '--no-host-info']);
    const digest = built.stdout.trim();
    for (let i = 0; i < 2; i++) expect((await ckpt(['copy', `oci:${join(work, 'src')}:v1`, `oci:${join(work, 'dst')}@${digest}`])).exitCode).toBe(0);
    const index = await (await OciLayout.open(join(work, 'dst'))).readIndex();
    expect(index.manifests.map((m) => [m.digest, m.annotations?.[Annotation.refName]])).toEqual([[digest, undefined]]);
    await execa('umoci', ['gc', '--layout', join(work, 'dst')]);
    const inspected = await ckpt(['inspect', `oci:${join(work, 'dst')}@${digest}`]);
    expect(inspected.exitCode, inspected.stderr).toBe(0);
  });

  it('a copy again reports every blob it finds there as skipped, the manifests under an index too', async () => {
    const work = await tempDir('ckpt-tags-');
    expect((await ckpt(['build', fixture('containerd-counter.tar'), `oci:${join(work, 'src')}:v1`, '--compat', 'containerd'])).exitCode).toBe(0);
    await copy(`oci:${join(work, 'src')}:v1`, `oci:${join(work, 'dst')}:v1`);
    const states = new Map<string, string>();
    await copy(`oci:${join(work, 'src')}:v1`, `oci:${join(work, 'dst')}:v2`, { onProgress: (e) => e.digest && states.set(e.digest, e.state) });
    const blobs = await readdir(join(work, 'src', 'blobs', 'sha256'));
    expect([...states.keys()].sort()).toEqual(blobs.map((b) => `sha256:${b}`).sort());
    expect(new Set(states.values())).toEqual(new Set(['skipped']));
  });

  it('two builds into one new layout at once: it is made once and keeps both, and skopeo reads both', async () => {
    const dir = join(await tempDir('ckpt-tags-'), 'new', 'layout');
    const builds = await Promise.all(
      ['podman-counter.tar', 'crio-counter.tar'].map((name, i) => ckpt(['build', fixture(name), `oci:${dir}:c${i}`, '-q'])),
    );
    for (const b of builds) expect(b.exitCode, b.stderr).toBe(0);
    expect((await (await OciLayout.open(dir)).tags()).sort()).toEqual(['c0', 'c1']);
    for (const tag of ['c0', 'c1']) await execa('skopeo', ['inspect', `oci:${dir}:${tag}`]);
  });

  it('wait for a lock held by a live process, and take over one its process left behind', async () => {
    const { dir, layout, desc } = await layoutWithBlob();
    const lock = join(dir, 'index.json.lock');
    // A live holder (this test's process): the tag waits until the lock is released.
    await writeFile(lock, `${process.pid}\n`);
    const tagging = layout.tag(desc, 'waited');
    await new Promise((r) => setTimeout(r, 300));
    expect(await layout.tags()).toEqual([]);
    await execa('rm', [lock]);
    await tagging;
    expect(await layout.tags()).toEqual(['waited']);
    // A holder that is gone: its lock is stale and taken over at once.
    const gone = execa('true');
    await gone;
    await writeFile(lock, `${gone.pid}\n`);
    // At once: not after the 30 s that make any lock stale.
    let started = Date.now();
    await layout.tag(desc, 'after-crash');
    expect(Date.now() - started).toBeLessThan(5000);
    // A lock whose holder cannot be checked (another host) is stale once old.
    await writeFile(lock, 'not-a-pid\n');
    const old = new Date(Date.now() - 120_000);
    await utimes(lock, old, old);
    started = Date.now();
    await layout.tag(desc, 'after-old');
    expect(Date.now() - started).toBeLessThan(5000);
    expect(await layout.tags()).toEqual(['waited', 'after-crash', 'after-old']);
  });
});

describe('a layout a failed build made', () => {
  it('is removed, or emptied where the directory existed, once nobody has it open', async () => {
    const { dir, layout, desc } = await layoutWithBlob();
    // Open for writing: this process uses it.
    await removeUnusedLayout(dir, true);
    expect(await layout.exists(desc)).toBe(true);
    await layout.close();
    await removeUnusedLayout(dir, true);
    expect(await readdir(dir)).toEqual([]);
    await (await OciLayout.open(dir, { create: true })).close();
    await removeUnusedLayout(dir, false);
    expect(existsSync(dir)).toBe(false);
    expect(await readdir(join(dir, '..'))).toEqual([]);
  });

  it('is kept when another process tagged into it, is writing a blob to it, or has it open', async () => {
    const tagged = await layoutWithBlob();
    await tagged.layout.tag(tagged.desc, 'theirs');
    await tagged.layout.close();
    await removeUnusedLayout(tagged.dir, false);
    expect(await tagged.layout.tags()).toEqual(['theirs']);
    const writing = await layoutWithBlob();
    await writing.layout.close();
    await mkdir(join(writing.dir, '.ingest'));
    await removeUnusedLayout(writing.dir, false);
    expect(await writing.layout.exists(writing.desc)).toBe(true);
    // Open in another process, between two blob writes: nothing tagged, nothing being written.
    const open = await layoutWithBlob();
    await open.layout.close();
    const holder = execa('node', ['--input-type=module', '-e', `
      const { OciLayout } = await import(${JSON.stringify(STORE)});
      await OciLayout.open(${JSON.stringify(open.dir)}, { create: true });
      console.log('open');
      await new Promise((r) => setTimeout(r, 60_000));`]);
    await Promise.race([
      new Promise<void>((ready) => holder.stdout?.once('data', () => ready())),
      holder.then(() => Promise.reject(new Error('the holder ended before it opened the layout'))),
    ]);
    await removeUnusedLayout(open.dir, false);
    expect(await open.layout.exists(open.desc)).toBe(true);
    holder.kill();
    await holder.catch(() => undefined);
    // Its mark outlives it; a process that is gone does not keep the layout.
    await removeUnusedLayout(open.dir, false);
    expect(existsSync(open.dir)).toBe(false);
  });

  for (const keepDir of [false, true]) {
    it(`being removed${keepDir ? ' (emptied)' : ''} while another process opens it: the opener gets a whole layout`, async () => {
      for (let round = 0; round < 30; round++) {
        const { dir, layout, desc } = await layoutWithBlob();
        await layout.close();
        const [, opened] = await Promise.all([removeUnusedLayout(dir, keepDir), OciLayout.open(dir, { create: true })]);
        await opened.push(desc, Readable.from([Buffer.from(MANIFEST)]));
        await opened.tag(desc, 'after');
        await opened.close();
        expect(await opened.tags(), `round ${round}`).toEqual(['after']);
      }
    });
  }

  for (const keepDir of [false, true]) {
    it(`left aside${keepDir ? ' in the directory' : ''} by a process killed while deleting it is deleted by the next one to open the layout`, async () => {
      const { dir, layout } = await layoutWithBlob();
      await layout.close();
      const parent = join(dir, '..');
      // Moved aside by a running process, and by an older ckpt that did not name itself: both kept.
      const live = join(keepDir ? dir : parent, `${keepDir ? '' : '.layout'}.removed.${HOLDER}.${randomUUID()}`);
      const unnamed = join(keepDir ? dir : parent, `${keepDir ? '' : '.layout'}.removed.${randomUUID()}`);
      // Named like an aside of a dead process but not of ckpt's making (a user's backup, say): kept.
      const lookalike = join(keepDir ? dir : parent, `${keepDir ? '' : '.layout'}.removed.999999999.backup`);
      for (const kept of [live, unnamed, lookalike]) await mkdir(join(kept, 'blobs'), { recursive: true });
      // A cleanup whose deletion never ends, killed once the layout is aside.
      const cleanup = execa('node', ['--input-type=module', '-e', `
        const fs = (await import('node:fs/promises')).default;
        const rm = fs.rm;
        fs.rm = async (path, options) => {
          if (!path.includes('.removed.')) return rm(path, options);
          console.log('aside');
          await new Promise(() => setTimeout(() => undefined, 60_000));
        };
        (await import('node:module')).syncBuiltinESMExports();
        const { removeUnusedLayout } = await import(${JSON.stringify(STORE)});
        await removeUnusedLayout(${JSON.stringify(dir)}, ${keepDir});`]);
      await Promise.race([
        new Promise<void>((ready) => cleanup.stdout?.once('data', () => ready())),
        cleanup.then(() => Promise.reject(new Error('the cleanup ended before it moved the layout aside'))),
      ]);
      cleanup.kill('SIGKILL');
      await cleanup.catch(() => undefined);
      const leftovers = async () => (await readdir(keepDir ? dir : parent)).filter((name) => name.includes('.removed.')).sort();
      const named = (await leftovers()).filter((name) => new RegExp(`\\.removed\\.${cleanup.pid ?? 'none'}[@.]`).test(name));
      expect(named).toHaveLength(1);
      await (await OciLayout.open(dir, { create: true })).close();
      expect(await leftovers()).toEqual([basename(live), basename(unnamed), basename(lookalike)].sort());
    });
  }

  it('blobs, a lock, the user mark, an index.json and a skeleton a killed process left are deleted by the next one to open the layout', async () => {
    const { dir, layout } = await layoutWithBlob();
    await layout.close();
    const ingest = join(dir, '.ingest');
    const dead = join(ingest, await leftByExited());
    const live = join(ingest, `${HOLDER}.${randomUUID()}`);
    await mkdir(ingest);
    for (const file of [dead, live]) await writeFile(file, Buffer.alloc(1 << 20));
    // A lock it was making, written but not yet linked into place.
    const holder = await exitedHolder();
    const lock = join(dir, `index.json.lock.${holder}.${randomUUID()}`);
    await writeFile(lock, `${holder}\n`);
    const mark = join(dir, '.users', await leftByExited());
    await mkdir(join(dir, '.users'));
    await writeFile(mark, '');
    // The index.json it was replacing, the skeleton of a layout it was making beside this one; a user's own names stay.
    const index = join(dir, `.index.json.${await leftByExited()}`);
    const skeleton = join(dirname(dir), `.${basename(dir)}.${await leftByExited()}`);
    const users = [join(dir, '.index.json.backup'), join(dirname(dir), `.${basename(dir)}.old`)];
    for (const file of [index, ...users]) await writeFile(file, '{}');
    await mkdir(join(skeleton, 'blobs', 'sha256'), { recursive: true });
    await (await OciLayout.open(dir, { create: true })).close();
    expect(await readdir(ingest)).toEqual([basename(live)]);
    expect(existsSync(lock)).toBe(false);
    expect(existsSync(join(dir, '.users'))).toBe(false);
    expect(existsSync(index)).toBe(false);
    expect(existsSync(skeleton)).toBe(false);
    for (const file of users) expect(existsSync(file)).toBe(true);
    await rm(live);
    await (await OciLayout.open(dir, { create: true })).close();
    expect(existsSync(ingest)).toBe(false);
  });

  it('is left alone when half made', async () => {
    const dir = join(await tempDir('ckpt-tags-'), 'layout');
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    await writeFile(join(dir, 'index.json'), '{"schemaVersion":2,"manifests":[]}');
    await removeUnusedLayout(dir, false);
    expect((await readdir(dir)).sort()).toEqual(['blobs', 'index.json']);
  });
});
