/** The three buffdb services as grpc-js definitions (paths from the wire contract). */
import * as blob from '../generated/blob.js';
import * as kv from '../generated/kv.js';
import * as query from '../generated/query.js';
import { BoolCodec, method } from './codec.js';

export const KvDefinition = {
  get: method('/buffdb.kv.Kv/Get', true, true, kv.GetRequest, kv.GetResponse),
  set: method('/buffdb.kv.Kv/Set', true, true, kv.SetRequest, kv.SetResponse),
  delete: method('/buffdb.kv.Kv/Delete', true, true, kv.DeleteRequest, kv.DeleteResponse),
  eq: method('/buffdb.kv.Kv/Eq', true, false, kv.EqRequest, BoolCodec),
  notEq: method('/buffdb.kv.Kv/NotEq', true, false, kv.NotEqRequest, BoolCodec),
  beginTransaction: method(
    '/buffdb.kv.Kv/BeginTransaction',
    false,
    false,
    kv.BeginTransactionRequest,
    kv.BeginTransactionResponse,
  ),
  commitTransaction: method(
    '/buffdb.kv.Kv/CommitTransaction',
    false,
    false,
    kv.CommitTransactionRequest,
    kv.CommitTransactionResponse,
  ),
  rollbackTransaction: method(
    '/buffdb.kv.Kv/RollbackTransaction',
    false,
    false,
    kv.RollbackTransactionRequest,
    kv.RollbackTransactionResponse,
  ),
} as const;

export const BlobDefinition = {
  get: method('/buffdb.blob.Blob/Get', true, true, blob.GetRequest, blob.GetResponse),
  store: method('/buffdb.blob.Blob/Store', true, true, blob.StoreRequest, blob.StoreResponse),
  update: method('/buffdb.blob.Blob/Update', true, true, blob.UpdateRequest, blob.UpdateResponse),
  delete: method('/buffdb.blob.Blob/Delete', true, true, blob.DeleteRequest, blob.DeleteResponse),
  eqData: method('/buffdb.blob.Blob/EqData', true, false, blob.EqDataRequest, BoolCodec),
  notEqData: method('/buffdb.blob.Blob/NotEqData', true, false, blob.NotEqDataRequest, BoolCodec),
  upload: method('/buffdb.blob.Blob/Upload', true, false, blob.UploadRequest, blob.UploadResponse),
  uploadStatus: method(
    '/buffdb.blob.Blob/UploadStatus',
    false,
    false,
    blob.UploadStatusRequest,
    blob.UploadStatusResponse,
  ),
  download: method('/buffdb.blob.Blob/Download', false, true, blob.DownloadRequest, blob.DownloadResponse),
} as const;

export const QueryDefinition = {
  query: method('/buffdb.query.Query/Query', true, true, query.RawQuery, query.QueryResult),
  execute: method('/buffdb.query.Query/Execute', true, true, query.RawQuery, query.RowsChanged),
} as const;
