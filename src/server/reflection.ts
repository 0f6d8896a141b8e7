/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha, served by @grpc/reflection), so grpcurl,
 * `buf curl` and Postman can list and call every service with no .proto at hand.
 *
 * @grpc/reflection is normally fed from proto-loader, whose descriptors are named after packages
 * and declare no imports (grpc-node issue 2595): clients then cannot resolve
 * google.protobuf.BoolValue and fail. So the descriptors are built here, one per real .proto file
 * under its real name, with its imports and fully-qualified type names — from every .proto under
 * proto/ (new files are picked up as they are added), the well-known types they import, and the
 * health service.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative, resolve, sep } from 'node:path';
import type { Server } from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import type * as Protobuf from 'protobufjs';

const require = createRequire(import.meta.url);
const protobuf = require('protobufjs') as typeof Protobuf;
// Adds toDescriptor() to protobufjs's reflection classes and the descriptor.proto message types.
const descriptor = require('protobufjs/ext/descriptor') as {
  FileDescriptorProto: { create(p: object): FileDescriptor; encode(f: FileDescriptor): { finish(): Uint8Array } };
};

/** The wire contract's directory (proto/ at the package root, beside src/ and dist/). */
export const PROTO_DIR = resolve(import.meta.dirname, '..', '..', 'proto');

interface FieldDescriptor {
  name: string;
  label?: string | number;
  typeName?: string;
  options?: object;
  proto3_optional?: boolean;
  proto3Optional?: boolean;
}
interface MessageDescriptor {
  name: string;
  field: FieldDescriptor[];
  nestedType: MessageDescriptor[];
}
interface FileDescriptor {
  name: string;
  package?: string;
  dependency: string[];
  messageType: MessageDescriptor[];
  enumType: unknown[];
  service: unknown[];
  extension: unknown[];
  syntax?: string;
}

type Reflected = Protobuf.ReflectionObject & { toDescriptor(edition?: string): unknown };

function protoFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...protoFiles(path));
    else if (entry.name.endsWith('.proto')) out.push(path);
  }
  return out.sort();
}

/**
 * Repairs what protobufjs's toDescriptor() gets wrong for clients: field types named relative to
 * their scope (made fully qualified), proto3 `optional` not marked (it writes `proto3_optional`
 * where descriptor.proto's encoder expects `proto3Optional`), and a `packed` option copied onto
 * fields that cannot be packed.
 */
function repairFields(type: Protobuf.Type, d: MessageDescriptor): void {
  for (const fd of d.field) {
    const field = type.fields[fd.name];
    if (fd.proto3_optional) fd.proto3Optional = true;
    // Only `packed = false` on a repeated scalar says anything in proto3.
    if ((fd.options as { packed?: boolean } | undefined)?.packed !== false) fd.options = undefined;
    if (!field) continue;
    if (field.map) {
      // protoc names a map's entry type <FieldInCamelCase>Entry, and clients check the name.
      const entry = d.nestedType.find((n) => n.name === fd.typeName);
      const entryName = `${field.name.replace(/(?:^|_)([a-z0-9])/g, (_m, c: string) => c.toUpperCase())}Entry`;
      if (entry) entry.name = entryName;
      fd.typeName = `${type.fullName}.${entryName}`;
      const value = entry?.field.find((f) => f.name === 'value');
      if (value && field.resolvedType) value.typeName = field.resolvedType.fullName;
    } else if (field.resolvedType) {
      fd.typeName = field.resolvedType.fullName;
    }
  }
  for (const nested of type.nestedArray) {
    if (nested instanceof protobuf.Type) {
      const nd = d.nestedType.find((n) => n.name === nested.name);
      if (nd) repairFields(nested, nd);
    }
  }
}

interface Source {
  name: string;
  text: string;
}

/** Complete FileDescriptorProtos (serialized) for `sources` and the well-known types they import. */
export function buildFileDescriptors(sources: Source[]): Uint8Array[] {
  const root = new protobuf.Root();
  const files: { name: string; pkg: string; syntax: string; imports: string[]; objects: Reflected[] }[] = [];
  const owner = new WeakSet<object>();
  /** Everything added to `root` since the last call belongs to file `name`. */
  const claim = (name: string, pkg: string, syntax: string, imports: string[]): void => {
    const objects: Reflected[] = [];
    const walk = (ns: Protobuf.NamespaceBase): void => {
      for (const child of ns.nestedArray) {
        const isDefinition =
          child instanceof protobuf.Type ||
          child instanceof protobuf.Service ||
          child instanceof protobuf.Enum ||
          child instanceof protobuf.Field;
        if (isDefinition) {
          if (!owner.has(child)) {
            owner.add(child);
            objects.push(child as Reflected);
          }
        } else if (child instanceof protobuf.Namespace) {
          walk(child); // a package
        }
      }
    };
    walk(root);
    files.push({ name, pkg, syntax, imports, objects });
  };
  const wellKnown = new Set<string>();
  for (const source of sources) {
    const parsed = protobuf.parse(source.text, root, { keepCase: true });
    const imports = [...(parsed.imports ?? []), ...(parsed.weakImports ?? [])];
    const syntax = /^\s*syntax\s*=\s*["'](proto[23])["']/m.exec(source.text)?.[1] ?? 'proto2';
    claim(source.name, parsed.package ?? '', syntax, imports);
    for (const i of imports) if (i.startsWith('google/protobuf/')) wellKnown.add(i);
  }
  for (const name of wellKnown) {
    if (sources.some((s) => s.name === name)) continue;
    const json = protobuf.common.get(name);
    if (!json) continue; // not served: dropped from the imports below
    root.addJSON(json.nested as Protobuf.INamespace['nested'] & object);
    claim(name, 'google.protobuf', 'proto3', []);
  }
  // An import that is not served (a file missing under proto/) would make clients fail on the
  // file that names it; leaving it out only loses what it declares.
  const served = new Set(files.map((f) => f.name));
  for (const f of files) f.imports = f.imports.filter((i) => served.has(i));
  root.resolveAll();
  return files.map((f) => {
    const file = descriptor.FileDescriptorProto.create({
      name: f.name,
      package: f.pkg || undefined,
      dependency: f.imports,
      syntax: f.syntax,
    });
    for (const object of f.objects) {
      const d = object.toDescriptor(f.syntax);
      if (object instanceof protobuf.Type) {
        repairFields(object, d as MessageDescriptor);
        file.messageType.push(d as MessageDescriptor);
      } else if (object instanceof protobuf.Enum) file.enumType.push(d);
      else if (object instanceof protobuf.Service) file.service.push(d);
      else if (object instanceof protobuf.Field) file.extension.push(d);
    }
    return descriptor.FileDescriptorProto.encode(file).finish();
  });
}

/** Every .proto under `dir` (names relative to it, as imports spell them) and the health service. */
export function servedProtoSources(dir = PROTO_DIR): Source[] {
  const sources = protoFiles(dir).map((path) => ({
    name: relative(dir, path).split(sep).join('/'),
    text: readFileSync(path, 'utf8'),
  }));
  sources.push({ name: 'grpc/health/v1/health.proto', text: readFileSync(healthProtoPath, 'utf8') });
  return sources;
}

/** Adds grpc.reflection.v1 and v1alpha to `server`, describing every service in proto/ and Health. */
export function addReflection(server: Server, dir = PROTO_DIR): void {
  const fileDescriptorProtos = buildFileDescriptors(servedProtoSources(dir));
  // @grpc/reflection reads only `fileDescriptorProtos` from the package definition it is given.
  const definition = { buffdb: { fileDescriptorProtos } } as unknown as ConstructorParameters<
    typeof ReflectionService
  >[0];
  new ReflectionService(definition).addToServer(server);
}
