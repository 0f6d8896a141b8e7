/**
 * etcdserverpb.Auth over the auth file (src/auth/etcd-admin.ts): users, roles and key-range
 * permissions are entries of the file buffdb's tokens live in; each change is written to it
 * atomically before it is answered. Who may call what is decided by the auth interceptor
 * (etcd-auth-rules.ts) before a handler runs: Authenticate is open, the rest needs the admin right
 * (the root role), except AuthStatus and a user's own UserGet and RoleGet.
 *
 * Authentication is on exactly when the server runs with --auth-file: AuthStatus says so, AuthEnable
 * succeeds once a user root holding the role root exists (etcd's errors otherwise), AuthDisable is
 * refused (the server is never opened up over the API). Without an auth file Authenticate answers
 * etcd's "authentication is not enabled" (etcd clients given a user then go on without a token),
 * AuthStatus answers disabled, AuthDisable has nothing to do, and the rest is FAILED_PRECONDITION.
 */
import type { ServerUnaryCall, sendUnaryData, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { AuthFileSource } from '../../auth/auth-file.js';
import * as admin from '../../auth/etcd-admin.js';
import { hashPassword, type PasswordHash } from '../../auth/passwords.js';
import { failedPrecondition, invalidArgument } from '../../errors.js';
import { Permission_Type } from '../../generated/etcd/authpb/auth.js';
import type * as pb from '../../generated/etcd/etcdserverpb/rpc.js';
import type { KvStore } from '../../store/kv/kv-store.js';
import type { DecodeFailure } from '../codec.js';
import { header, unary } from './common.js';

type Handler<Req, Res> = (call: ServerUnaryCall<Req | DecodeFailure, Res>, callback: sendUnaryData<Res>) => void;

const { etcdAuthError } = admin;
const TYPES: Record<number, admin.PermType> = {
  [Permission_Type.READ]: 'READ',
  [Permission_Type.WRITE]: 'WRITE',
  [Permission_Type.READWRITE]: 'READWRITE',
};
const TYPE_NUMBERS = { READ: Permission_Type.READ, WRITE: Permission_Type.WRITE, READWRITE: Permission_Type.READWRITE };

const noAuthFile = () =>
  failedPrecondition(
    'etcdserver: authentication is not enabled: buffdb keeps etcd users and roles in its auth file; run it with --auth-file FILE',
  );

/** A password as stored; bcrypt hashes from etcd 3.5 clients (hashed_password) cannot be taken. */
async function passwordOf(req: { password: string; hashedPassword: string }): Promise<PasswordHash> {
  if (req.password === '' && req.hashedPassword !== '') {
    throw invalidArgument('buffdb stores scrypt hashes of passwords: send the password, not a bcrypt hash');
  }
  return hashPassword(req.password);
}

export function etcdAuthService(kv: KvStore, source: AuthFileSource | undefined): UntypedServiceImplementation {
  /** A handler that answers `{ header }` plus what `work` returns; without an auth file, `offline`'s answer. */
  const handle =
    <Req, Res>(
      work: (req: Req, src: AuthFileSource) => Promise<Omit<Res, 'header'>> | Omit<Res, 'header'>,
      offline: () => Omit<Res, 'header'> = () => {
        throw noAuthFile();
      },
    ): Handler<Req, Res> =>
    (call, callback) =>
      unary(call, callback, async (req) => {
        const body = source ? await work(req, source) : offline();
        return { header: header(kv), ...body } as Res;
      });
  /** A change to the file, answered with an empty body. */
  const change =
    <Req>(apply: (file: Parameters<Parameters<AuthFileSource['update']>[0]>[0], req: Req) => void) =>
    (req: Req, src: AuthFileSource) => {
      src.update((file) => apply(file, req));
      return {};
    };
  const file = (src: AuthFileSource) => src.authenticator.file;

  return {
    authEnable: handle<pb.AuthEnableRequest, pb.AuthEnableResponse>((_req, src) => {
      admin.checkRootUser(file(src));
      return {};
    }),
    authDisable: handle<pb.AuthDisableRequest, pb.AuthDisableResponse>(
      () => {
        throw failedPrecondition(
          'buffdb: authentication stays on while the server runs with --auth-file; restart it without to turn it off',
        );
      },
      () => ({}),
    ),
    authStatus: handle<pb.AuthStatusRequest, pb.AuthStatusResponse>(
      (_req, src) => ({ enabled: true, authRevision: BigInt(src.revision) }),
      () => ({ enabled: false, authRevision: 0n }),
    ),
    authenticate: handle<pb.AuthenticateRequest, pb.AuthenticateResponse>(
      async (req, src) => {
        const user = src.authenticator.byUser(req.name);
        if (!(await src.passwords.check(req.password, user?.entry.scrypt))) throw etcdAuthError.authFailed();
        return { token: src.tokens.issue(req.name) };
      },
      () => {
        throw etcdAuthError.notEnabled();
      },
    ),

    userAdd: handle<pb.AuthUserAddRequest, pb.AuthUserAddResponse>(async (req, src) => {
      // Checked before the (costly) hash, and again on the file as it is when written.
      admin.addUser(structuredClone(file(src)), req.name, undefined);
      const scrypt = req.options?.noPassword ? undefined : await passwordOf(req);
      src.update((f) => admin.addUser(f, req.name, scrypt));
      return {};
    }),
    userGet: handle<pb.AuthUserGetRequest, pb.AuthUserGetResponse>((req, src) => ({
      roles: [...(admin.findUser(file(src), req.name).roles ?? [])],
    })),
    userList: handle<pb.AuthUserListRequest, pb.AuthUserListResponse>((_req, src) => ({
      users: (file(src).users ?? []).map((u) => u.name).sort(),
    })),
    userDelete: handle<pb.AuthUserDeleteRequest, pb.AuthUserDeleteResponse>((req, src) => {
      src.update((f) => admin.deleteUser(f, req.name));
      src.tokens.revokeUser(req.name);
      return {};
    }),
    userChangePassword: handle<pb.AuthUserChangePasswordRequest, pb.AuthUserChangePasswordResponse>(
      async (req, src) => {
        admin.findUser(file(src), req.name);
        const scrypt = await passwordOf(req);
        src.update((f) => admin.changePassword(f, req.name, scrypt));
        src.tokens.revokeUser(req.name);
        return {};
      },
    ),
    userGrantRole: handle<pb.AuthUserGrantRoleRequest, pb.AuthUserGrantRoleResponse>(
      change((f, req) => admin.grantRole(f, req.user, req.role)),
    ),
    userRevokeRole: handle<pb.AuthUserRevokeRoleRequest, pb.AuthUserRevokeRoleResponse>(
      change((f, req) => admin.revokeRole(f, req.name, req.role)),
    ),

    roleAdd: handle<pb.AuthRoleAddRequest, pb.AuthRoleAddResponse>(change((f, req) => admin.addRole(f, req.name))),
    roleGet: handle<pb.AuthRoleGetRequest, pb.AuthRoleGetResponse>((req, src) => ({
      perm: admin
        .rolePermissions(file(src), req.role)
        .map((p) => ({ permType: TYPE_NUMBERS[p.type], key: p.key, rangeEnd: p.rangeEnd })),
    })),
    roleList: handle<pb.AuthRoleListRequest, pb.AuthRoleListResponse>((_req, src) => ({
      roles: Object.keys(file(src).roles ?? {}).sort(),
    })),
    roleDelete: handle<pb.AuthRoleDeleteRequest, pb.AuthRoleDeleteResponse>(
      change((f, req) => admin.deleteRole(f, req.role)),
    ),
    roleGrantPermission: handle<pb.AuthRoleGrantPermissionRequest, pb.AuthRoleGrantPermissionResponse>(
      change((f, req) => {
        const perm = req.perm;
        if (!perm) throw invalidArgument('etcdserver: permission not given');
        const type = TYPES[perm.permType];
        if (!type) throw invalidArgument(`unknown permission type ${perm.permType}`);
        admin.grantPermission(f, req.name, { type, key: perm.key, rangeEnd: perm.rangeEnd });
      }),
    ),
    roleRevokePermission: handle<pb.AuthRoleRevokePermissionRequest, pb.AuthRoleRevokePermissionResponse>(
      change((f, req) => admin.revokePermission(f, req.role, req.key, req.rangeEnd)),
    ),
  } as UntypedServiceImplementation;
}
