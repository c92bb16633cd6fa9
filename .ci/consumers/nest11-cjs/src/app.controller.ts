import { Controller, Get } from '@nestjs/common';
import { Public } from 'nestjs-keycard';
import { AppService } from './app.service';

// As `nest new` generates it, with the one change the README asks for: `GET /` stays open.
@Controller()
export class AppController {
  constructor(private readonly appService: AppService) {}

  @Public()
  @Get()
  getHello(): string {
    return this.appService.getHello();
  }
}
