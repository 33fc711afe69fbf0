-- wrk script: POST /publish with a small JSON event, bearer from $PUB_TOKEN.
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("PUB_TOKEN")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"topic":"bench/orders","event":"order.updated","data":{"id":42,"status":"shipped","note":"a typical small event"}}'
