"""A FastAPI app: a page at / and a WebSocket echo at every path, served by uvicorn on $PORT:

uvicorn app:app --host 127.0.0.1 --port $PORT
"""

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()


@app.get("/")
def index() -> dict[str, str]:
    return {"status": "ok"}


@app.websocket("/{path:path}")
async def echo(websocket: WebSocket, path: str) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass
