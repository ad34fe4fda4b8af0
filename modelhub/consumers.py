from channels.generic.websocket import AsyncJsonWebsocketConsumer


class GenerationConsumer(AsyncJsonWebsocketConsumer):
    pass
